//! Host names resolved on a schedule, not once at start (smokeping_prober's most common
//! complaint): a device renumbered in DNS is followed, and a name that stops resolving
//! makes its target down instead of silently pinging a stale address.

use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Host;

/// The system resolver (getaddrinfo: /etc/hosts, DNS, whatever nsswitch says).
pub type LookupFn = Arc<dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync>;

pub fn system_lookup() -> LookupFn {
    Arc::new(|name: &str| {
        Ok((name, 0)
            .to_socket_addrs()?
            .map(|sa| sa.ip())
            .collect::<Vec<_>>())
    })
}

/// The address of one target, re-resolved every `every`.
pub struct AddressResolver {
    host: Host,
    every: Duration,
    /// Longest a round waits for the resolver; a slow lookup keeps running in the
    /// background and is picked up by a later round instead of piling up new ones.
    wait: Duration,
    lookup: LookupFn,
    current: Option<IpAddr>,
    resolved_at: Option<Instant>,
    pending: Option<JoinHandle<io::Result<Vec<IpAddr>>>>,
}

impl AddressResolver {
    pub fn new(host: Host, every: Duration, wait: Duration, lookup: LookupFn) -> Self {
        Self {
            host,
            every,
            wait,
            lookup,
            current: None,
            resolved_at: None,
            pending: None,
        }
    }

    /// The address to probe this round, resolving again when due or after a failure.
    pub async fn address(&mut self) -> Result<IpAddr, String> {
        let name = match &self.host {
            Host::Ip(ip) => return Ok(*ip),
            Host::Name(name) => name.clone(),
        };
        let fresh = self.resolved_at.is_some_and(|at| at.elapsed() < self.every);
        if let (Some(ip), true) = (self.current, fresh) {
            return Ok(ip);
        }
        let handle = match self.pending.take() {
            Some(h) => h,
            None => {
                let lookup = self.lookup.clone();
                let n = name.clone();
                tokio::task::spawn_blocking(move || lookup(&n))
            }
        };
        let mut handle = handle;
        let outcome = match tokio::time::timeout(self.wait, &mut handle).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
            Err(_) => {
                self.pending = Some(handle);
                self.current = None;
                return Err(format!("resolving {name} took longer than {:?}", self.wait));
            }
        };
        self.resolved_at = Some(Instant::now());
        match outcome {
            Ok(ips) => match ips.first() {
                Some(ip) => {
                    if self.current.is_some_and(|c| c != *ip) {
                        tracing::info!(host = %name, address = %ip, "host name now resolves to a new address");
                    }
                    self.current = Some(*ip);
                    Ok(*ip)
                }
                None => {
                    self.current = None;
                    Err(format!("{name} resolves to no address"))
                }
            },
            Err(e) => {
                self.current = None;
                Err(format!("cannot resolve {name}: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[tokio::test]
    async fn re_resolves_when_due_and_drops_a_name_that_stops_resolving() {
        let answer: Arc<Mutex<Option<IpAddr>>> =
            Arc::new(Mutex::new(Some("127.0.0.7".parse().unwrap())));
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, c) = (answer.clone(), calls.clone());
        let lookup: LookupFn = Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            match *a.lock().unwrap() {
                Some(ip) => Ok(vec![ip]),
                None => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
            }
        });
        let mut r = AddressResolver::new(
            Host::Name("router.example".into()),
            Duration::from_millis(200),
            Duration::from_secs(2),
            lookup,
        );
        assert_eq!(r.address().await.unwrap().to_string(), "127.0.0.7");
        // Cached until due.
        assert_eq!(r.address().await.unwrap().to_string(), "127.0.0.7");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        *answer.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let e = r.address().await.unwrap_err();
        assert!(e.contains("router.example"), "{e}");
        // After a failure every round tries again, without waiting for the interval.
        *answer.lock().unwrap() = Some("127.0.0.8".parse().unwrap());
        assert_eq!(r.address().await.unwrap().to_string(), "127.0.0.8");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_hung_lookup_is_not_started_twice() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let lookup: LookupFn = Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            Ok(vec!["127.0.0.9".parse().unwrap()])
        });
        let mut r = AddressResolver::new(
            Host::Name("slow.example".into()),
            Duration::from_secs(60),
            Duration::from_millis(100),
            lookup,
        );
        assert!(r.address().await.is_err());
        assert!(r.address().await.is_err());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(r.address().await.unwrap().to_string(), "127.0.0.9");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
