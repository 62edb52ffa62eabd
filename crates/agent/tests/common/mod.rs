//! What the agent's Docker tests share: removing what one test created from the real engine.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use flotilla_agent::runtime::labels;

/// Removes what one test created, on drop (also on panic).
pub struct Cleanup {
    pub docker: Docker,
    /// The container instance ARN the test's containers and volumes are labelled with.
    pub instance: String,
    /// The Docker network the test made.
    pub network: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (docker, instance, network) = (self.docker.clone(), self.instance.clone(), self.network.clone());
        // Drop cannot await and the test's runtime may be panicking: use a fresh one.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let filters = HashMap::from([("label".to_string(), vec![format!("{}={instance}", labels::INSTANCE)])]);
                let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
                for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
                    let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                    let _ = docker.remove_container(c.id.as_deref().unwrap_or_default(), Some(rm)).await;
                }
                // Docker releases a removed container's endpoint a moment later.
                for attempt in 0..50 {
                    match docker.remove_network(&network).await {
                        Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                            break
                        }
                        Err(e) if attempt == 49 => eprintln!("cleanup: network {network}: {e}"),
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                let vfilters = HashMap::from([("label".to_string(), vec![format!("{}={instance}", labels::INSTANCE)])]);
                let voptions =
                    bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&vfilters).build();
                if let Ok(list) = docker.list_volumes(Some(voptions)).await {
                    for v in list.volumes.unwrap_or_default() {
                        let _ =
                            docker.remove_volume(&v.name, None::<bollard::query_parameters::RemoveVolumeOptions>).await;
                    }
                }
            });
        });
        let _ = done.join();
    }
}
