//! Container names and images from the Docker Engine API (read-only socket), so container
//! series carry cAdvisor's `name` and `image` labels. Without the socket, containers are
//! reported by cgroup id only.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptions;
use bollard::{ClientVersion, Docker};
use tokio::runtime::Handle;
use vigia_kit::metrics::ErrorCounter;

/// API 1.41 is Docker 20.10's; newer engines still accept it.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// A scrape waits at most this long for the engine.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Unknown ids trigger at most one listing per this interval (ids of other runtimes never
/// become known, and must not make every scrape call the engine).
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Names are listed again at least this often, so a renamed container is seen renamed.
const MAX_AGE: Duration = Duration::from_secs(300);

/// Where the engine keeps containers' files and how: `DockerRootDir` and `Driver` of
/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub root_dir: String,
    pub driver: String,
}

struct Cache {
    /// container id → (name, image).
    known: HashMap<String, (String, String)>,
    last_refresh: Option<Instant>,
    /// Whether the last call failed, so a broken engine is logged once, not per scrape.
    failing: bool,
}

pub struct ContainerNames {
    docker: Docker,
    runtime: Handle,
    capacity: usize,
    cache: Mutex<Cache>,
    errors: ErrorCounter,
}

impl ContainerNames {
    /// Connects lazily to the socket; `None` (logged) when the socket is absent.
    pub fn connect(
        socket: &Path,
        capacity: usize,
        runtime: Handle,
        errors: ErrorCounter,
    ) -> Option<ContainerNames> {
        if !socket.exists() {
            tracing::info!(
                socket = %socket.display(),
                "no Docker socket: containers are reported by cgroup id, without name and image"
            );
            return None;
        }
        let path = socket.to_string_lossy();
        match Docker::connect_with_unix(&path, LOOKUP_TIMEOUT.as_secs(), &API_VERSION) {
            Ok(docker) => Some(ContainerNames {
                docker,
                runtime,
                capacity,
                cache: Mutex::new(Cache {
                    known: HashMap::new(),
                    last_refresh: None,
                    failing: false,
                }),
                errors,
            }),
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "cannot use the Docker socket: containers by id only");
                None
            }
        }
    }

    /// Names and images of `ids`; lists the engine's containers again when one is unknown.
    /// Called from a blocking scrape thread.
    pub fn lookup(&self, ids: &[&str]) -> HashMap<String, (String, String)> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let unknown = ids.iter().any(|id| !cache.known.contains_key(*id));
        let age = cache.last_refresh.map(|t| t.elapsed());
        let due = age.map_or(true, |a| a >= MIN_REFRESH);
        let stale = !ids.is_empty() && age.map_or(true, |a| a >= MAX_AGE);
        if (unknown && due) || stale {
            cache.last_refresh = Some(Instant::now());
            match self.list() {
                Ok(listing) => {
                    if cache.failing {
                        tracing::info!("Docker engine answers again");
                    }
                    cache.failing = false;
                    let wanted: HashSet<&str> = ids.iter().copied().collect();
                    // Containers being scraped first, so the bound never drops them.
                    let (mut keep, rest): (Vec<_>, Vec<_>) = listing
                        .into_iter()
                        .partition(|(id, _)| wanted.contains(id.as_str()));
                    keep.extend(rest);
                    keep.truncate(self.capacity);
                    cache.known = keep.into_iter().collect();
                }
                Err(e) => {
                    self.errors.inc("docker");
                    if !cache.failing {
                        tracing::warn!(error = %e, "Docker engine lookup failed: containers by id only until it answers");
                    }
                    cache.failing = true;
                }
            }
        }
        ids.iter()
            .filter_map(|id| cache.known.get(*id).map(|v| (id.to_string(), v.clone())))
            .collect()
    }

    /// The engine's data root and storage driver.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        let docker = self.docker.clone();
        let call = async move { tokio::time::timeout(LOOKUP_TIMEOUT, docker.info()).await };
        let info = self
            .runtime
            .block_on(call)
            .map_err(|_| anyhow::anyhow!("timed out after {LOOKUP_TIMEOUT:?}"))??;
        Ok(Engine {
            root_dir: info.docker_root_dir.unwrap_or_default(),
            driver: info.driver.unwrap_or_default(),
        })
    }

    /// Running containers' writable-layer sizes (`SizeRw` of `GET /containers/json?size=1`:
    /// the engine walks each layer itself, so this is asked for at most once a round).
    pub fn layer_sizes(&self) -> anyhow::Result<HashMap<String, f64>> {
        let docker = self.docker.clone();
        let call = async move {
            let options = ListContainersOptions {
                all: false,
                size: true,
                ..Default::default()
            };
            // Sizing every layer takes the engine longer than a listing.
            tokio::time::timeout(LOOKUP_TIMEOUT * 15, docker.list_containers(Some(options))).await
        };
        let summaries = self
            .runtime
            .block_on(call)
            .map_err(|_| anyhow::anyhow!("timed out after {:?}", LOOKUP_TIMEOUT * 15))??;
        Ok(summaries
            .into_iter()
            .filter_map(|s| Some((s.id?, s.size_rw? as f64)))
            .collect())
    }

    fn list(&self) -> anyhow::Result<Vec<(String, (String, String))>> {
        let docker = self.docker.clone();
        let call = async move {
            let options = ListContainersOptions {
                all: true,
                ..Default::default()
            };
            tokio::time::timeout(LOOKUP_TIMEOUT, docker.list_containers(Some(options))).await
        };
        let summaries = self
            .runtime
            .block_on(call)
            .map_err(|_| anyhow::anyhow!("timed out after {LOOKUP_TIMEOUT:?}"))??;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let id = s.id?;
                let name = s
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                Some((id, (name, s.image.unwrap_or_default())))
            })
            .collect())
    }
}
