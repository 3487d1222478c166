//! `SharedMemory`: a block of bytes shared between processes, named or
//! anonymous, as Python's `multiprocessing.shared_memory.SharedMemory`.
//!
//! # Names, owners and the sweep
//!
//! A named segment `name` is the file `/dev/shm/mproc.<name>`; the prefix
//! marks the files mproc manages, so the sweep below never touches another
//! program's. Its creator is its *owner*: the owner's handle unlinks the
//! name when its last clone drops; attachers (`open`, or a handle received
//! by a child) never do, unless they call [`SharedMemory::unlink`].
//!
//! Crash safety: the owner holds an exclusive `flock` on the file for as
//! long as it lives, and the kernel drops that lock when the owner's
//! process ends, however it ends. Every `create` and `open`, in any mproc
//! process, first *sweeps*: it tries to take the lock of each
//! `mproc.*` file and unlinks those it gets — their owners are gone. A
//! `flock` belongs to an open file description, not to a pid, so pid reuse
//! cannot fool the sweep. A new segment is created under a private staging
//! name (`mproc-new.<pid>.<n>`), sized and locked there, and only then
//! renamed into place (`renameat2(RENAME_NOREPLACE)`, atomic): the sweep
//! never sees a published segment without its lock, and `open` never sees
//! one not yet sized. Staging files left by a crash are swept once their
//! pid is dead and their lock free.
//!
//! # Space
//!
//! A segment is reserved whole when created (`fallocate`, in the staging
//! file, before it is published): a `/dev/shm` too full for it (Docker's
//! is 64 MiB) makes `create` fail with `Error::NoSpace` and leave nothing
//! behind, where a file only sized with `ftruncate` would kill the process
//! with `SIGBUS` at the first write of a page the file system has no room
//! for. Anonymous memory (a memfd) is reserved the same way.
//!
//! So after an owner crashes, its name lasts until the next `create` or
//! `open` by any mproc process on the machine (or the next
//! [`SharedMemory::sweep`]); meanwhile the memory stays readable by the
//! processes that mapped it. Handles sent to children carry a fresh open
//! file description of the file, without the owner's lock, so a child that
//! outlives its owner does not keep a dead owner's name alive. A child
//! started by `fork` inherits the owner's descriptions (and lock) and keeps
//! the name until it ends too; it never unlinks (it is not the owner's pid).

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::bytes::SharedBytes;
use super::cells::check_range;
use crate::codec::WireFd;
use crate::error::{Error, Result};
use crate::sys::posix_shm as posix;
use crate::sys::proc::getpid;
use crate::sys::shm::{reserve, SharedRegion};

/// The prefix of every published segment's file name.
const PREFIX: &str = "mproc.";
/// The prefix of segments being created.
const STAGING: &str = "mproc-new.";
/// The longest file name in `/dev/shm`.
const NAME_MAX: usize = 255;

/// A block of bytes in shared memory: named (any process may attach by
/// name) or anonymous (passed to children as a handle), as Python's
/// `SharedMemory`.
///
/// ```
/// use mproc::SharedMemory;
///
/// fn greet(shm: SharedMemory) {
///     shm.write(0, b"hello").unwrap();
/// }
///
/// let shm = SharedMemory::anonymous(16)?;
/// mproc::spawn(greet, shm.clone())?.join()?;
/// let mut buf = [0u8; 5];
/// shm.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// # Access and soundness
///
/// Other processes may write the bytes at any moment, so a plain `&[u8]`
/// over them would promise Rust an immutability nobody enforces (Python's
/// `memoryview` has no such promise to break). The safe accessors therefore
/// copy: [`read`](Self::read), [`write`](Self::write) and
/// [`to_vec`](Self::to_vec) copy byte by byte with relaxed atomic loads
/// and stores (defined behaviour even when they race, within a process or
/// across processes, but no synchronisation: pair them with a
/// [`Lock`](crate::Lock), a message or a join; for bulk copies of
/// megabytes, the `unsafe` slices under a lock are faster). [`as_ptr`](Self::as_ptr) gives the raw address for atomics or
/// FFI, and the `unsafe` [`as_slice`](Self::as_slice) /
/// [`as_mut_slice`](Self::as_mut_slice) give slices to a caller who can
/// promise the exclusion they need.
///
/// # Names and crash safety
///
/// A named segment `name` is the file `/dev/shm/mproc.<name>` (other
/// programs open it by that name); the prefix marks the files mproc
/// manages, so its cleanup never touches another program's. The creator's
/// handle owns the name and unlinks it when its last clone drops; attachers
/// ([`open`](Self::open), or a handle a child receives) never do, unless
/// they call [`unlink`](Self::unlink).
///
/// The owner holds an exclusive `flock` on the file, which the kernel drops
/// when the owner's process ends, however it ends. Every `create` and
/// `open`, in any mproc process, first [sweeps](Self::sweep): it unlinks
/// the `mproc.*` files whose lock it can take — their owners are gone. So
/// after an owner crashes, its name lasts until the next `create` or `open`
/// by any mproc process on the machine (or an explicit `sweep`); the memory
/// stays usable by the processes that mapped it. A lock belongs to an open
/// file, not to a pid, so pid reuse cannot fool the sweep; a child that was
/// *forked* from the owner shares the owner's open file and keeps the name
/// alive until it ends too.
///
/// # Space
///
/// The memory is reserved when the segment is created, so a full
/// `/dev/shm` (Docker's default is 64 MiB) or a memory limit is an error
/// from [`create`](Self::create) or [`anonymous`](Self::anonymous)
/// ([`Error::NoSpace`]), never a `SIGBUS` at a later write.
#[derive(Clone)]
pub struct SharedMemory {
    inner: Arc<Inner>,
}

struct Inner {
    bytes: SharedBytes,
    /// The user's name (without the prefix); `None` for anonymous memory.
    name: Option<String>,
    /// The pid of the owner when this handle is the owner's.
    owner: Option<i32>,
    /// Unlinked through this handle already.
    unlinked: AtomicBool,
}

impl SharedMemory {
    /// Creates the named segment `name` of `size` zeroed bytes; this
    /// handle is its owner.
    ///
    /// The memory is reserved now: [`Error::NoSpace`] if `/dev/shm` has
    /// not `size` bytes free, and no file is left behind then.
    ///
    /// Errors: [`Error::AlreadyExists`] if the name is taken,
    /// [`Error::NoSpace`], [`Error::InvalidArgument`] for a size of 0 or a
    /// name that is empty, holds `/` or NUL, or is too long.
    ///
    /// ```
    /// # let name = format!("doc-create-{}", std::process::id());
    /// use mproc::{Error, SharedMemory};
    ///
    /// let shm = SharedMemory::create(&name, 4096)?;
    /// assert_eq!(shm.size(), 4096);
    /// assert!(matches!(
    ///     SharedMemory::create(&name, 1),
    ///     Err(Error::AlreadyExists { .. })
    /// ));
    /// drop(shm); // the owner unlinks the name
    /// assert!(matches!(SharedMemory::open(&name), Err(Error::NotFound { .. })));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: usize) -> Result<Self> {
        let file = file_name(name)?;
        if size == 0 {
            return Err(Error::InvalidArgument(
                "shared memory of size 0 cannot be created".into(),
            ));
        }
        let _ = Self::sweep();
        let fd = publish(&file, size).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists { name: name.into() },
            _ => Error::shm_create(
                "cannot create shared memory",
                &format!("shared memory '{name}'"),
                size,
            )(e),
        })?;
        let region = SharedRegion::open(fd).map_err(Error::io("cannot map shared memory"))?;
        Ok(Self::from_parts(region, Some(name.into()), Some(getpid())))
    }

    /// Attaches to the existing named segment `name`; its size is the
    /// segment's. [`Error::NotFound`] if there is none.
    ///
    /// Attaching allocates nothing: a segment made by
    /// [`create`](Self::create) was reserved whole by its creator, so
    /// writing it cannot fault for lack of space. (A segment another
    /// program made with `ftruncate` alone, as Python's `SharedMemory`
    /// does, may not be: writing a page a full `/dev/shm` has no room for
    /// raises `SIGBUS`.)
    ///
    /// ```
    /// # let name = format!("doc-open-{}", std::process::id());
    /// # let missing = format!("doc-open-missing-{}", std::process::id());
    /// use mproc::SharedMemory;
    ///
    /// let owner = SharedMemory::create(&name, 100)?;
    /// let other = SharedMemory::open(&name)?;
    /// assert_eq!(other.size(), 100);
    /// other.write(0, &[7])?;
    /// assert_eq!(owner.to_vec()[0], 7);
    /// assert!(SharedMemory::open(&missing).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<Self> {
        let file = file_name(name)?;
        let _ = Self::sweep();
        let fd = posix::open_existing(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { name: name.into() },
            _ => Error::io("cannot open shared memory")(e),
        })?;
        let region = SharedRegion::open(fd).map_err(Error::io("cannot map shared memory"))?;
        Ok(Self::from_parts(region, Some(name.into()), None))
    }

    /// `size` zeroed bytes of anonymous shared memory (a `memfd`): no name,
    /// nothing to unlink, gone when the last process holding it lets go.
    /// Share it by passing it to a child. The memory is reserved now:
    /// [`Error::NoSpace`] if it is not there (a memory limit).
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(8)?;
    /// assert_eq!(shm.name(), None);
    /// assert_eq!(shm.to_vec(), [0; 8]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "memfd_create")]
    pub fn anonymous(size: usize) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "shared memory of size 0 cannot be created".into(),
            ));
        }
        let region = SharedRegion::create("mproc-shm", size).map_err(Error::shm_create(
            "cannot create shared memory",
            "anonymous shared memory",
            size,
        ))?;
        Ok(Self::from_parts(region, None, None))
    }

    fn from_parts(region: SharedRegion, name: Option<String>, owner: Option<i32>) -> Self {
        SharedMemory {
            inner: Arc::new(Inner {
                bytes: SharedBytes::new(region),
                name,
                owner,
                unlinked: AtomicBool::new(false),
            }),
        }
    }

    /// The size in bytes.
    ///
    /// ```
    /// assert_eq!(mproc::SharedMemory::anonymous(10)?.size(), 10);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.inner.bytes.region().len()
    }

    /// The name given to [`create`](Self::create) or [`open`](Self::open);
    /// `None` for anonymous memory.
    ///
    /// ```
    /// # let name = format!("doc-name-{}", std::process::id());
    /// let shm = mproc::SharedMemory::create(&name, 1)?;
    /// assert_eq!(shm.name(), Some(name.as_str()));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Whether this handle owns the name (created it, in this process), so
    /// that dropping its last clone unlinks the name.
    ///
    /// ```
    /// # let name = format!("doc-owner-{}", std::process::id());
    /// use mproc::SharedMemory;
    /// let owner = SharedMemory::create(&name, 1)?;
    /// assert!(owner.is_owner());
    /// assert!(!SharedMemory::open(&name)?.is_owner());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn is_owner(&self) -> bool {
        self.inner.owner == Some(getpid())
    }

    /// Removes the name, so no one else can attach; mappings stay valid.
    /// Any handle may do it (as in Python), once: [`Error::NotFound`] if
    /// the name is gone or now names another segment. Anonymous memory has
    /// no name ([`Error::InvalidState`]).
    ///
    /// ```
    /// # let name = format!("doc-unlink-{}", std::process::id());
    /// use mproc::SharedMemory;
    /// let shm = SharedMemory::create(&name, 1)?;
    /// shm.unlink()?;
    /// assert!(SharedMemory::open(&name).is_err());
    /// shm.write(0, &[1])?; // still mapped
    /// assert!(shm.unlink().is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "shm_unlink")]
    pub fn unlink(&self) -> Result<()> {
        let name = self
            .name()
            .ok_or(Error::InvalidState("anonymous shared memory has no name"))?;
        let file = file_name(name)?;
        let ours = posix::names_file(&file, self.inner.bytes.region().as_fd())
            .map_err(Error::io("cannot unlink shared memory"))?;
        if !ours {
            return Err(Error::NotFound { name: name.into() });
        }
        posix::unlink(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { name: name.into() },
            _ => Error::io("cannot unlink shared memory")(e),
        })?;
        self.inner.unlinked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `buf.len()` bytes from `offset` into `buf` (relaxed atomic
    /// bytes, not synchronised). [`Error::OutOfRange`] past the end.
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(4)?;
    /// shm.write(1, &[1, 2])?;
    /// let mut two = [0u8; 2];
    /// shm.read(1, &mut two)?;
    /// assert_eq!(two, [1, 2]);
    /// assert!(shm.read(3, &mut two).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        check_range(offset, buf.len(), self.size())?;
        self.inner.bytes.read(offset, buf);
        Ok(())
    }

    /// Copies `data` to `offset` (relaxed atomic bytes, not synchronised).
    /// [`Error::OutOfRange`] past the end; nothing is written then.
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(4)?;
    /// shm.write(0, b"abcd")?;
    /// assert!(shm.write(2, b"xyz").is_err());
    /// assert_eq!(shm.to_vec(), b"abcd");
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        check_range(offset, data.len(), self.size())?;
        self.inner.bytes.write(offset, data);
        Ok(())
    }

    /// A copy of all the bytes (relaxed atomic bytes, not synchronised).
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(2)?;
    /// assert_eq!(shm.to_vec(), [0, 0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.inner.bytes.read(0, &mut v);
        v
    }

    /// The first byte of the mapping, valid for [`size`](Self::size) bytes
    /// while any clone of this handle lives. For atomics or FFI; every
    /// access through it is the caller's to make sound.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// let shm = mproc::SharedMemory::anonymous(4)?;
    /// // SAFETY: the mapping is page-aligned, 4 bytes long, and lives as
    /// // long as `shm`; every process uses these bytes only atomically.
    /// let counter = unsafe { AtomicU32::from_ptr(shm.as_ptr().cast()) };
    /// counter.fetch_add(1, Ordering::SeqCst);
    /// assert_eq!(shm.to_vec(), 1u32.to_ne_bytes());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.bytes.ptr()
    }

    /// The bytes as a slice (Python's `buf`).
    ///
    /// # Safety
    ///
    /// While the slice lives, no process may write the bytes — not another
    /// process, not another thread, not this thread through another handle.
    /// Typically: every writer takes the same [`Lock`](crate::Lock) and you
    /// hold it, or writers have finished (joined) and none will start.
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(3)?;
    /// shm.write(0, b"abc")?;
    /// // SAFETY: no other process has the segment; no one writes it now.
    /// let bytes = unsafe { shm.as_slice() };
    /// assert_eq!(bytes, b"abc");
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "buf")]
    #[allow(unsafe_code)] // a raw view the caller vouches for (see Safety)
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the absence of writers is the caller's promise, the one
        // `SharedBytes::slice` asks for.
        unsafe { self.inner.bytes.slice() }
    }

    /// The bytes as a mutable slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, nothing else may read or write the bytes:
    /// not another process, not another thread, not this thread through
    /// another handle or another call. Typically: every process that uses
    /// the segment takes the same [`Lock`](crate::Lock) and you hold it.
    ///
    /// ```
    /// let shm = mproc::SharedMemory::anonymous(3)?;
    /// // SAFETY: no other process has the segment; nothing else uses it.
    /// unsafe { shm.as_mut_slice() }.copy_from_slice(b"xyz");
    /// assert_eq!(shm.to_vec(), b"xyz");
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[allow(clippy::mut_from_ref, unsafe_code)] // as `as_slice`
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: exclusivity is the caller's promise, the one
        // `SharedBytes::slice_mut` asks for.
        unsafe { self.inner.bytes.slice_mut() }
    }

    /// Removes the names of segments whose owner has died (see
    /// [Names and crash safety](SharedMemory#names-and-crash-safety));
    /// returns how many.
    /// `create` and `open` call it first; call it yourself to clean up
    /// without creating anything.
    ///
    /// ```
    /// let removed = mproc::SharedMemory::sweep()?;
    /// # let _ = removed;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn sweep() -> Result<usize> {
        sweep().map_err(Error::io("cannot sweep shared memory"))
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("owner", &self.is_owner())
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let (Some(name), Some(owner)) = (&self.name, self.owner) else {
            return;
        };
        if owner != getpid() || self.unlinked.load(Ordering::Relaxed) {
            return;
        }
        let file = format!("{PREFIX}{name}");
        if let Ok(true) = posix::names_file(&file, self.bytes.region().as_fd()) {
            let _ = posix::unlink(&file);
        }
    }
}

/// How a handle travels: a descriptor of the segment and its name.
#[derive(Serialize, Deserialize)]
struct Wire {
    fd: WireFd,
    name: Option<String>,
}

impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let fd = self.inner.bytes.region().as_fd();
        // A named segment travels as a new open file description, which
        // does not carry the owner's lock (see the module docs).
        let fd = match self.inner.name {
            Some(_) => posix::reopen(fd).or_else(|_| fd.try_clone_to_owned()),
            None => fd.try_clone_to_owned(),
        }
        .map_err(serde::ser::Error::custom)?;
        Wire {
            fd: WireFd(fd),
            name: self.inner.name.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let Wire { fd, name } = Wire::deserialize(d)?;
        let region = SharedRegion::open(fd.0).map_err(D::Error::custom)?;
        Ok(Self::from_parts(region, name, None))
    }
}

/// The file of a segment named `name`, after checking the name.
fn file_name(name: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidArgument(format!("bad shared memory name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.contains(['/', '\0']) {
        return Err(bad("contains '/' or NUL"));
    }
    if PREFIX.len() + name.len() > NAME_MAX {
        return Err(bad("too long"));
    }
    Ok(format!("{PREFIX}{name}"))
}

/// Creates `file` of `size` bytes, reserved and locked by the returned
/// descriptor: made under a staging name, then renamed into place (see the
/// module docs). On error, nothing is left: the staging file is unlinked.
fn publish(file: &str, size: usize) -> std::io::Result<OwnedFd> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let staging = format!(
        "{STAGING}{}.{}",
        getpid(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let fd = posix::create_exclusive(&staging)?;
    let r = (|| {
        posix::set_len(&fd, size)?;
        reserve(&fd, 0, size as u64)?;
        if !posix::try_lock_exclusive(&fd)? {
            return Err(std::io::Error::other("a fresh segment is locked"));
        }
        posix::rename_noreplace(&staging, file)
    })();
    if r.is_err() {
        let _ = posix::unlink(&staging);
    }
    r.map(|()| fd)
}

/// Unlinks the published segments whose lock is free and the staging
/// files of dead processes; returns how many.
fn sweep() -> std::io::Result<usize> {
    let mut removed = 0;
    for file in posix::list(PREFIX)? {
        removed += usize::from(remove_if_abandoned(&file));
    }
    for file in posix::list(STAGING)? {
        let pid = file[STAGING.len()..]
            .split('.')
            .next()
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|pid| !posix::pid_exists(pid)) {
            removed += usize::from(remove_if_abandoned(&file));
        }
    }
    Ok(removed)
}

/// Unlinks `file` if no one holds its lock (its owner is gone). Holding the
/// lock while unlinking keeps other sweepers off the same file.
fn remove_if_abandoned(file: &str) -> bool {
    let Ok(fd) = posix::open_existing(file) else {
        return false;
    };
    matches!(posix::try_lock_exclusive(&fd), Ok(true))
        && matches!(posix::names_file(file, &fd), Ok(true))
        && posix::unlink(file).is_ok()
}
