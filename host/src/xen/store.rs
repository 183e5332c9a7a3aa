//! xenstore access (xenstore-rs) and domain names.

use super::XenError;
use crate::guest::Store;
use std::io::ErrorKind;
use xenstore_rs::Xs;

/// A synchronous xenstore connection.
pub struct XenStore {
    xs: xenstore_rs::unix::XsUnix,
}

impl XenStore {
    /// Connects to xenstored (socket) or the xenbus device.
    pub fn open() -> Result<Self, XenError> {
        let xs = xenstore_rs::unix::XsUnix::new().map_err(|source| XenError::Call {
            call: "xenstore open",
            source,
        })?;
        Ok(XenStore { xs })
    }
}

fn missing(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(2)
}

impl Store for XenStore {
    fn read(&self, path: &str) -> std::io::Result<Option<String>> {
        match self.xs.read(path) {
            Ok(v) => Ok(Some(v.into())),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn directory(&self, path: &str) -> std::io::Result<Vec<String>> {
        match self.xs.directory(path) {
            Ok(v) => Ok(v.into_iter().map(String::from).collect()),
            Err(e) if missing(&e) => Ok(vec![]),
            Err(e) => Err(e),
        }
    }
}

/// A running domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Domain id.
    pub id: u32,
    /// Its name from xenstore.
    pub name: String,
}

/// All domains xenstore knows, by id. A domain whose name cannot be read (it is going
/// away, or its entry is odd) is listed without one rather than failing the others.
pub fn domains(store: &dyn Store) -> std::io::Result<Vec<Domain>> {
    let mut out = Vec::new();
    for id in store.directory("/local/domain")? {
        let Ok(num) = id.parse::<u32>() else { continue };
        let name = match store.read(&format!("/local/domain/{num}/name")) {
            Ok(Some(n)) => n
                .chars()
                .take(vmark_proto::limits::XS_MAX_VALUE_LEN)
                .collect(),
            Ok(None) | Err(_) => String::new(),
        };
        out.push(Domain { id: num, name });
        if out.len() >= vmark_proto::limits::LIVE_MAX_DOMAINS {
            break;
        }
    }
    out.sort_by_key(|d| d.id);
    Ok(out)
}

/// Resolves a domain given by name or id.
pub fn resolve_domain(store: &dyn Store, spec: &str) -> Result<Domain, XenError> {
    let all = domains(store).map_err(|source| XenError::Call {
        call: "xenstore directory /local/domain",
        source,
    })?;
    all.iter()
        .find(|d| d.name == spec)
        .or_else(|| {
            spec.parse::<u32>()
                .ok()
                .and_then(|id| all.iter().find(|d| d.id == id))
        })
        .cloned()
        .ok_or_else(|| XenError::NoSuchDomain(spec.to_string()))
}
