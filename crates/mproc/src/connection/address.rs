//! Where a [`Listener`](super::Listener) listens: a Unix path, a Linux
//! abstract name, or a TCP address.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A socket address, as Python's `family` + `address` pair.
///
/// ```
/// use mproc::Address;
///
/// let a = Address::tcp("127.0.0.1:0")?;
/// assert!(matches!(a, Address::Tcp(_)));
/// let b = Address::unix("/tmp/mproc-doc.sock");
/// assert_eq!(b.to_string(), "/tmp/mproc-doc.sock");
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix socket file (`AF_UNIX`), removed when its listener closes.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (Python's `"\0name"`): no file.
    Abstract(Vec<u8>),
    /// A TCP address (`AF_INET`/`AF_INET6`).
    Tcp(SocketAddr),
}

impl Address {
    /// A Unix socket file at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }

    /// A Linux abstract socket called `name` (no leading NUL).
    #[doc(alias = "abstract")]
    pub fn abstract_name(name: impl Into<Vec<u8>>) -> Address {
        Address::Abstract(name.into())
    }

    /// A fresh abstract name no other listener uses (a random suffix).
    pub fn unique_abstract() -> Result<Address> {
        let mut r = [0u8; 12];
        super::auth::random(&mut r)?;
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Address::Abstract(format!("mproc-{hex}").into_bytes()))
    }

    /// The first TCP address `addr` resolves to (`"127.0.0.1:0"`,
    /// `"localhost:5000"`...).
    pub fn tcp(addr: impl ToSocketAddrs) -> Result<Address> {
        addr.to_socket_addrs()
            .map_err(Error::io("cannot resolve a TCP address"))?
            .next()
            .map(Address::Tcp)
            .ok_or_else(|| Error::InvalidArgument("the TCP address resolves to nothing".into()))
    }

    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, Address::Tcp(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(n) => write!(f, "\\0{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}
