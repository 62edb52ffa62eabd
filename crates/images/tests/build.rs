//! Image building against the real Docker Engine: idempotence, rebuilding a stale image, distinct
//! variants, the shape of the two standard images, and the blocking wrapper. Tests that build
//! under a tag of their own remove it afterwards; the standard images are left for the next run.

mod support;

use std::time::Instant;

use bollard::query_parameters::RemoveImageOptionsBuilder;
use bollard::Docker;
use flotilla_images::{
    ensure, ensure_image, ensure_image_blocking, ensure_standard_images, ImageKind, ImageSpec, FINGERPRINT_LABEL,
    KIND_LABEL, PAUSE_IMAGE, WORKLOAD_IMAGE,
};

/// A tag unique to this test run, untagged (and the image removed if nothing else uses it) on drop.
struct TestTag {
    docker: Docker,
    tag: String,
}

impl TestTag {
    fn new(docker: &Docker, name: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        TestTag { docker: docker.clone(), tag: format!("flotilla-test/{name}:{}-{nanos}", std::process::id()) }
    }
}

impl Drop for TestTag {
    fn drop(&mut self) {
        let (docker, tag) = (self.docker.clone(), self.tag.clone());
        // As for containers (tests/support): no await in Drop, so a thread with its own runtime.
        let removal = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let options = RemoveImageOptionsBuilder::default().force(true).build();
            runtime.block_on(docker.remove_image(&tag, Some(options), None)).map(|_| ())
        });
        if let Ok(Err(e)) = removal.join() {
            eprintln!("could not remove test image {}: {e}", self.tag);
        }
    }
}

#[tokio::test]
async fn building_twice_is_idempotent_and_the_second_call_only_inspects() {
    let docker = support::docker().await;
    let tag = TestTag::new(&docker, "idempotent");

    let started = Instant::now();
    let first = ensure_image(&docker, &tag.tag).await.expect("first build");
    let first_took = started.elapsed();
    let started = Instant::now();
    let second = ensure_image(&docker, &tag.tag).await.expect("second call");
    let second_took = started.elapsed();
    eprintln!("first ensure (build): {first_took:?}; second ensure (inspect only): {second_took:?}");

    assert!(first.built, "a new tag is built");
    assert!(!second.built, "a current image is not built again");
    assert_eq!(first.id, second.id);
    assert_eq!(first.fingerprint, second.fingerprint);
    assert_eq!(first.kind, ImageKind::Workload);

    let forced = ensure(&docker, &ImageSpec::for_tag(&tag.tag).forced()).await.expect("forced build");
    assert!(forced.built, "force always builds");
    assert_eq!(forced.fingerprint, first.fingerprint, "same spec, same fingerprint");
    let after = ensure_image(&docker, &tag.tag).await.expect("after forced build");
    assert_eq!((after.built, after.id), (false, forced.id), "the forced build is what the tag now holds");
}

#[tokio::test]
async fn a_stale_image_under_the_tag_is_rebuilt() {
    let docker = support::docker().await;
    let tag = TestTag::new(&docker, "stale");
    // A pause image under a workload tag stands in for an image from an older workload binary:
    // its fingerprint label does not match what the workload spec expects.
    let pause = ensure(&docker, &ImageSpec::pause(&tag.tag)).await.expect("build pause under the tag");
    let workload = ensure_image(&docker, &tag.tag).await.expect("rebuild as workload");
    assert!(workload.built, "a stale image is replaced");
    assert_ne!(workload.id, pause.id);
    assert_ne!(workload.fingerprint, pause.fingerprint);
    // The replaced image is deleted unless something else (here, likely PAUSE_IMAGE from the
    // build cache) still holds it: a rebuild leaves nothing dangling.
    if let Ok(old) = docker.inspect_image(&pause.id).await {
        assert!(!old.repo_tags.unwrap_or_default().is_empty(), "the replaced image {} is left dangling", pause.id);
    }
}

#[tokio::test]
async fn labelled_variants_are_distinct_images() {
    let docker = support::docker().await;
    let tag = TestTag::new(&docker, "variant");
    let base = ensure_image(&docker, WORKLOAD_IMAGE).await.expect("workload image");
    let variant = ensure(&docker, &ImageSpec::workload(&tag.tag).label("io.flotilla.test.variant", "b"))
        .await
        .expect("variant image");
    assert_ne!(variant.id, base.id, "a label makes a different image, e.g. for a deployment test");
    let labels = docker.inspect_image(&tag.tag).await.unwrap().config.unwrap().labels.unwrap();
    assert_eq!(labels.get("io.flotilla.test.variant").map(String::as_str), Some("b"));
    assert_eq!(labels.get(KIND_LABEL).map(String::as_str), Some("workload"));
}

#[tokio::test]
async fn standard_images_have_exec_form_entrypoints_and_no_health_check() {
    let docker = support::docker().await;
    let [workload, pause] = ensure_standard_images(&docker).await.expect("standard images");
    assert_eq!((workload.tag.as_str(), pause.tag.as_str()), (WORKLOAD_IMAGE, PAUSE_IMAGE));
    assert_eq!((workload.kind, pause.kind), (ImageKind::Workload, ImageKind::Pause));

    let config = docker.inspect_image(WORKLOAD_IMAGE).await.unwrap().config.unwrap();
    assert_eq!(config.entrypoint, Some(vec!["/flotilla-workload".to_string()]));
    assert_eq!(config.cmd, Some(vec!["serve".to_string(), "8080".to_string()]));
    assert!(config.exposed_ports.unwrap_or_default().iter().any(|p| p == "8080/tcp"));
    assert!(config.healthcheck.is_none(), "tasks bring their own health checks");
    assert_eq!(config.labels.unwrap_or_default().get(FINGERPRINT_LABEL), Some(&workload.fingerprint));

    let config = docker.inspect_image(PAUSE_IMAGE).await.unwrap().config.unwrap();
    assert_eq!(config.entrypoint, Some(vec!["/flotilla-workload".to_string(), "pause".to_string()]));
    assert_eq!(config.cmd, None);
    let size = pause.size.expect("size");
    assert!(size < 8 << 20, "scratch plus one static binary stays small: {size} bytes");
}

#[tokio::test]
async fn blocking_wrapper_works_even_inside_a_runtime() {
    let info = ensure_image_blocking(PAUSE_IMAGE).expect("blocking ensure");
    assert_eq!(info.kind, ImageKind::Pause);
    assert!(info.id.starts_with("sha256:"), "{}", info.id);
}
