//! `flotilla-workload`: the one program inside Flotilla's test images. The images are `FROM
//! scratch` (no registry to pull a base from, see design §9), so there is no shell: this binary is
//! the ENTRYPOINT and an ECS `command` array picks what it does, e.g. `["serve", "8080"]`,
//! `["exit", "3", "--after", "1"]` or `["log", "5", "then", "sleep", "inf"]`. Steps joined by the
//! word `then` run in order; the chain stops at the first step that fails. It is std-only and is
//! compiled statically by the images crate's build script, so nothing here may depend on a crate.

mod http;
mod resolve;
mod signals;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use signals::OnTerm;

const USAGE: &str = "\
usage: flotilla-workload STEP [then STEP]...
steps:
  serve PORT [--body TEXT]         HTTP/1.1 server: 200 with TEXT (default: hostname) or the env at /env
  sleep SECS|inf                   sleep, then go on
  exit CODE [--after SECS]         exit with CODE
  echo [--stderr] TEXT...          print one line
  log N [--interval SECS]          print N numbered lines to stdout and N to stderr
  env                              print the environment, sorted
  touch PATH [TEXT]                write TEXT (or nothing) to PATH; as the last step, then sleep forever
  cat PATH                         print a file; exit 1 if it cannot be read
  get URL                          GET an http:// URL and print the body; exit 1 unless 2xx
  fetch URL                        as get, with ${VAR} in URL taken from the environment (there is
                                   no shell) and the body printed as one line
  healthcheck URL|PATH             exit 0 if the URL answers 2xx/3xx or the file exists, else 1
  connect HOST:PORT [--timeout S]  exit 0 once a TCP connection succeeds (retries for S, default 5)
  resolve NAME                     ask /etc/resolv.conf's first nameserver for NAME's A records, print
                                   each address; exit 1 if there are none
  trap-term [--delay S] [--code C] wait for SIGTERM/SIGINT, print it, wait S, exit C (default 0)
  ignore-term                      ignore SIGTERM/SIGINT and sleep until killed
  fail-health [--after S] [--file PATH]
                                   create PATH (default /tmp/healthy), remove it after S (default 0),
                                   sleep forever: pair with `healthcheck PATH`
  pause                            print `paused`, sleep forever; exit 0 on SIGTERM/SIGINT (holds a
                                   network namespace for awsvpc tasks)
Without a handler of its own, SIGTERM/SIGINT end the program with 128+signal, as for a normal process.";

/// One parsed step of the command line.
#[derive(Debug, PartialEq)]
enum Step {
    Serve { port: u16, body: Option<String> },
    Sleep(Option<Duration>),
    Exit { code: u8, after: Duration },
    Echo { text: String, stderr: bool },
    Log { lines: u64, interval: Duration },
    Env,
    Touch { path: PathBuf, text: String },
    Cat(PathBuf),
    Get(String),
    Fetch(String),
    Healthcheck(String),
    Connect { target: String, timeout: Duration },
    Resolve(String),
    TrapTerm { delay: Duration, code: u8 },
    IgnoreTerm,
    FailHealth { file: PathBuf, after: Duration },
    Pause,
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = match parse(&args) {
        Ok(steps) => steps,
        Err(message) => {
            eprintln!("flotilla-workload: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    signals::install(OnTerm::ExitLikeDefault);
    let last = steps.len() - 1;
    for (i, step) in steps.into_iter().enumerate() {
        let code = run(step, i == last);
        if code != 0 {
            return ExitCode::from(code);
        }
    }
    ExitCode::SUCCESS
}

/// Splits the arguments on `then` and parses each piece; no arguments means `help`.
fn parse(args: &[String]) -> Result<Vec<Step>, String> {
    if args.is_empty() {
        return Ok(vec![Step::Help]);
    }
    args.split(|a| a == "then").map(parse_step).collect()
}

fn parse_step(words: &[String]) -> Result<Step, String> {
    let (name, rest) = words.split_first().ok_or("empty step (two `then`s in a row?)")?;
    let mut opts = Options::new(name, rest);
    let step = match name.as_str() {
        "serve" => {
            let body = opts.flag("--body")?;
            Step::Serve { port: opts.positional("PORT")?, body }
        }
        "sleep" => Step::Sleep(parse_sleep(&opts.positional::<String>("SECS")?)?),
        "exit" => {
            let after = opts.seconds("--after")?.unwrap_or_default();
            Step::Exit { code: opts.positional("CODE")?, after }
        }
        "echo" => {
            let stderr = opts.switch("--stderr");
            Step::Echo { text: opts.take_rest().join(" "), stderr }
        }
        "log" => {
            let interval = opts.seconds("--interval")?.unwrap_or_default();
            Step::Log { lines: opts.positional("N")?, interval }
        }
        "env" => Step::Env,
        "touch" => {
            let path = opts.positional::<PathBuf>("PATH")?;
            Step::Touch { path, text: opts.take_rest().join(" ") }
        }
        "cat" => Step::Cat(opts.positional("PATH")?),
        "get" => Step::Get(opts.positional("URL")?),
        "fetch" => Step::Fetch(opts.positional("URL")?),
        "healthcheck" => Step::Healthcheck(opts.positional("URL_OR_PATH")?),
        "connect" => {
            let timeout = opts.seconds("--timeout")?.unwrap_or(Duration::from_secs(5));
            Step::Connect { target: opts.positional("HOST:PORT")?, timeout }
        }
        "resolve" => Step::Resolve(opts.positional("NAME")?),
        "trap-term" => {
            let delay = opts.seconds("--delay")?.unwrap_or_default();
            let code = opts.flag("--code")?.map(|c| c.parse()).transpose().map_err(|_| "--code: not 0-255")?;
            Step::TrapTerm { delay, code: code.unwrap_or(0) }
        }
        "ignore-term" => Step::IgnoreTerm,
        "fail-health" => {
            let after = opts.seconds("--after")?.unwrap_or_default();
            let file = opts.flag("--file")?.unwrap_or_else(|| "/tmp/healthy".into()).into();
            Step::FailHealth { file, after }
        }
        "pause" => Step::Pause,
        "help" | "--help" | "-h" => Step::Help,
        other => return Err(format!("unknown step `{other}`")),
    };
    opts.finish()?;
    Ok(step)
}

/// A step's words: flags (`--name value` or bare `--name`) are taken out first, in any position,
/// then positionals in order. Whatever is left over is an error.
struct Options<'a> {
    step: &'a str,
    words: Vec<&'a String>,
}

impl<'a> Options<'a> {
    fn new(step: &'a str, words: &'a [String]) -> Self {
        Options { step, words: words.iter().collect() }
    }

    fn flag(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(i) = self.words.iter().position(|w| *w == name) else { return Ok(None) };
        if i + 1 >= self.words.len() {
            return Err(format!("{}: {name} needs a value", self.step));
        }
        let value = self.words.remove(i + 1).clone();
        self.words.remove(i);
        Ok(Some(value))
    }

    fn switch(&mut self, name: &str) -> bool {
        let found = self.words.iter().position(|w| *w == name);
        found.map(|i| self.words.remove(i)).is_some()
    }

    fn seconds(&mut self, name: &str) -> Result<Option<Duration>, String> {
        let Some(text) = self.flag(name)? else { return Ok(None) };
        parse_seconds(&text).map(Some).map_err(|e| format!("{}: {name}: {e}", self.step))
    }

    fn positional<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, String> {
        if self.words.is_empty() {
            return Err(format!("{}: missing {what}", self.step));
        }
        let word = self.words.remove(0);
        word.parse().map_err(|_| format!("{}: bad {what} `{word}`", self.step))
    }

    fn take_rest(&mut self) -> Vec<String> {
        self.words.drain(..).cloned().collect()
    }

    fn finish(self) -> Result<(), String> {
        match self.words.first() {
            None => Ok(()),
            Some(extra) => Err(format!("{}: unexpected argument `{extra}`", self.step)),
        }
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds"))
}

/// `None` means forever.
fn parse_sleep(text: &str) -> Result<Option<Duration>, String> {
    match text {
        "inf" | "infinity" | "forever" => Ok(None),
        _ => parse_seconds(text).map(Some),
    }
}

/// Runs one step; returns its exit status (0 lets the chain go on). Steps that never end return
/// `!` through `sleep_forever` or a server loop.
fn run(step: Step, is_last: bool) -> u8 {
    match step {
        Step::Serve { port, body } => match http::serve(port, body) {
            Ok(()) => 0,
            Err(e) => fail(format!("serve: cannot listen on port {port}: {e}")),
        },
        Step::Sleep(None) => sleep_forever(),
        Step::Sleep(Some(d)) => {
            std::thread::sleep(d);
            0
        }
        Step::Exit { code, after } => {
            std::thread::sleep(after);
            println!("exiting with {code}");
            // Returning a non-zero status ends the chain; 0 would let it go on, so exit here.
            std::process::exit(code.into())
        }
        Step::Echo { text, stderr } => {
            if stderr {
                eprintln!("{text}");
            } else {
                println!("{text}");
            }
            0
        }
        Step::Log { lines, interval } => {
            for i in 1..=lines {
                println!("stdout line {i} of {lines}");
                eprintln!("stderr line {i} of {lines}");
                std::thread::sleep(interval);
            }
            0
        }
        Step::Env => {
            print!("{}", environment_text());
            0
        }
        Step::Touch { path, text } => {
            let written = path.parent().map_or(Ok(()), fs::create_dir_all).and_then(|()| fs::write(&path, &text));
            if let Err(e) = written {
                return fail(format!("touch {}: {e}", path.display()));
            }
            println!("wrote {}", path.display());
            if is_last {
                sleep_forever();
            }
            0
        }
        Step::Cat(path) => match fs::read(&path) {
            Ok(bytes) => {
                let mut out = std::io::stdout().lock();
                // A closed stdout is not this program's failure to report.
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
                0
            }
            Err(e) => fail(format!("cat {}: {e}", path.display())),
        },
        Step::Get(url) => match http::get(&url) {
            Ok(resp) => {
                print!("{}", resp.body);
                if (200..300).contains(&resp.status) {
                    0
                } else {
                    fail(format!("get {url}: status {}", resp.status))
                }
            }
            Err(e) => fail(format!("get: {e}")),
        },
        Step::Fetch(url) => {
            let url = expand_env(&url, |name| std::env::var(name).ok());
            match http::get(&url) {
                // One line per body, so that a chain of fetches reads back line by line.
                Ok(resp) => {
                    println!("{}", resp.body.trim_end_matches('\n'));
                    if (200..300).contains(&resp.status) {
                        0
                    } else {
                        fail(format!("fetch {url}: status {}", resp.status))
                    }
                }
                Err(e) => fail(format!("fetch: {e}")),
            }
        }
        Step::Healthcheck(target) => healthcheck(&target),
        Step::Connect { target, timeout } => connect(&target, timeout),
        Step::Resolve(name) => match resolve::resolve(&name) {
            Ok(addrs) => {
                for a in addrs {
                    println!("{a}");
                }
                0
            }
            Err(e) => fail(format!("resolve {name}: {e}")),
        },
        Step::TrapTerm { delay, code } => {
            signals::install(OnTerm::Record);
            println!("waiting for SIGTERM");
            let sig = signals::wait_for_term();
            println!("caught {}; exiting with {code} in {:.1}s", signals::name(sig), delay.as_secs_f64());
            std::thread::sleep(delay);
            std::process::exit(code.into())
        }
        Step::IgnoreTerm => {
            signals::install(OnTerm::Ignore);
            println!("ignoring SIGTERM");
            sleep_forever()
        }
        Step::FailHealth { file, after } => {
            if let Err(e) = fs::write(&file, b"ok\n") {
                return fail(format!("fail-health: cannot create {}: {e}", file.display()));
            }
            println!("healthy for {:.1}s", after.as_secs_f64());
            std::thread::sleep(after);
            // Already gone is fine: someone else made us unhealthy first.
            let _ = fs::remove_file(&file);
            println!("now unhealthy");
            sleep_forever()
        }
        Step::Pause => {
            signals::install(OnTerm::ExitZero);
            // Printed once the handler is in place: from here on SIGTERM means a clean exit.
            println!("paused");
            sleep_forever()
        }
        Step::Help => {
            println!("{USAGE}");
            0
        }
    }
}

/// Replaces each `${NAME}` with `lookup(NAME)` (empty when unset); anything else is kept as is.
fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&lookup(&rest[start + 2..start + 2 + len]).unwrap_or_default());
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    out
}

fn fail(message: String) -> u8 {
    eprintln!("flotilla-workload: {message}");
    1
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn healthcheck(target: &str) -> u8 {
    if target.starts_with("http://") {
        match http::get(target) {
            Ok(resp) if (200..400).contains(&resp.status) => 0,
            Ok(resp) => fail(format!("healthcheck {target}: status {}", resp.status)),
            Err(e) => fail(format!("healthcheck: {e}")),
        }
    } else if fs::metadata(target).is_ok() {
        0
    } else {
        fail(format!("healthcheck: {target} does not exist"))
    }
}

/// Tries to connect every 200 ms until `timeout`, so a test can start two tasks at once.
fn connect(target: &str, timeout: Duration) -> u8 {
    let deadline = Instant::now() + timeout;
    loop {
        match http::connect_once(target) {
            Ok(stream) => {
                let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                println!("connected to {target} ({peer})");
                return 0;
            }
            Err(e) if Instant::now() >= deadline => return fail(format!("connect: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Docker sets HOSTNAME; `/etc/hostname` is the fallback it also bind-mounts.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// `NAME=value` lines, sorted so tests can compare them.
fn environment_text() -> String {
    let mut vars: Vec<String> =
        std::env::vars_os().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
    vars.sort();
    vars.iter().map(|v| format!("{v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_chains_and_flags_in_any_position() {
        let steps = parse(&words("log 3 --interval 0.5 then exit --after 2 7")).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::Log { lines: 3, interval: Duration::from_millis(500) },
                Step::Exit { code: 7, after: Duration::from_secs(2) }
            ]
        );
        assert_eq!(
            parse(&words("serve 8080 --body hi")).unwrap(),
            vec![Step::Serve { port: 8080, body: Some("hi".into()) }]
        );
        assert_eq!(parse(&words("sleep inf")).unwrap(), vec![Step::Sleep(None)]);
        assert_eq!(parse(&[]).unwrap(), vec![Step::Help]);
        assert_eq!(parse(&words("resolve web.ns.test")).unwrap(), vec![Step::Resolve("web.ns.test".into())]);
        assert!(parse(&words("resolve")).is_err());
    }

    #[test]
    fn echo_and_touch_keep_their_text() {
        assert_eq!(
            parse(&words("echo --stderr a b c")).unwrap(),
            vec![Step::Echo { text: "a b c".into(), stderr: true }]
        );
        assert_eq!(
            parse(&words("touch /data/x hello world then exit 0")).unwrap()[0],
            Step::Touch { path: "/data/x".into(), text: "hello world".into() }
        );
    }

    #[test]
    fn fetch_expands_environment_variables() {
        assert_eq!(parse(&words("fetch ${U}/task")).unwrap(), vec![Step::Fetch("${U}/task".into())]);
        let env = |n: &str| (n == "U").then(|| "http://h:1/v4/t".to_string());
        assert_eq!(expand_env("${U}/task", env), "http://h:1/v4/t/task");
        assert_eq!(expand_env("a${NOPE}b${U}", env), "abhttp://h:1/v4/t");
        assert_eq!(expand_env("no ${ end", env), "no ${ end");
    }

    #[test]
    fn rejects_bad_input_with_the_step_named() {
        assert_eq!(parse(&words("exit 300")).unwrap_err(), "exit: bad CODE `300`");
        assert_eq!(parse(&words("serve")).unwrap_err(), "serve: missing PORT");
        assert_eq!(parse(&words("sleep 1 then")).unwrap_err(), "empty step (two `then`s in a row?)");
        assert_eq!(parse(&words("env extra")).unwrap_err(), "env: unexpected argument `extra`");
        assert_eq!(parse(&words("frobnicate")).unwrap_err(), "unknown step `frobnicate`");
        assert!(parse(&words("exit 1 --after soon")).unwrap_err().contains("not a number of seconds"));
        assert!(parse(&words("serve 80 --body")).unwrap_err().contains("needs a value"));
    }
}
