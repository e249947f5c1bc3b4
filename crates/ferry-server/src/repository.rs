//! An account's home in the repository, and every filesystem operation on it.
//!
//! The home is held open as a directory descriptor, and every path is
//! resolved by the kernel beneath it (`openat2` with `RESOLVE_BENEATH` and
//! `RESOLVE_NO_MAGICLINKS`): a symlink is followed only while it stays
//! inside the home, `..` never climbs out of it, and absolute symlinks are
//! refused. Because the check and the use are one system call, a client that
//! renames directories while another opens through them cannot lead an
//! operation outside the home.
//!
//! Operations on a name (create, rename, remove, link, the partial file of an
//! upload) open its directory once ([`Home::place`]) and act on the name in
//! it with the `*at` calls; the final name itself is never followed.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::path::RESERVED_PREFIX;
use ferry_core::{ErrorKind, FerryError, VirtualPath};
use ferry_proto::message::{DirEntry, FileKind, FileStat, FsStats, SetAttrs};
use ferry_store::Store;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Prefix of partial-upload files, inside [`RESERVED_PREFIX`].
const PARTIAL_PREFIX: &str = ".ferry-partial.";

/// Prefix of the files Ferry itself writes before they take their name
/// (see [`Scratch`]), inside [`RESERVED_PREFIX`].
const SCRATCH_PREFIX: &str = ".ferry-scratch.";

/// The most a client may set on a file with SETSTAT (or an open's
/// attributes): no group write, nothing for others, no setuid, setgid or
/// sticky bit.
pub const FILE_MODE_MASK: u32 = 0o640;

/// The most a client may set on a directory.
pub const DIR_MODE_MASK: u32 = 0o750;

/// How every path is resolved beneath the home.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Translates an I/O error into a [`FerryError`] whose message never names a
/// real path.
pub fn io_error(e: io::Error) -> FerryError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::DirectoryNotEmpty => ErrorKind::NotEmpty,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory => ErrorKind::WrongType,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    };
    let message = match kind {
        ErrorKind::NoSpace => "no space left in the repository".to_owned(),
        ErrorKind::NotFound => "no such file or directory".to_owned(),
        _ => {
            // std's io::Error display has no path in it; strip the os code.
            let text = e.to_string();
            text.split(" (os error")
                .next()
                .unwrap_or(&text)
                .to_lowercase()
        }
    };
    FerryError::new(kind, message)
}

/// The [`FerryError`] of a failed system call on a path of the home.
fn errno_error(e: Errno) -> FerryError {
    match e {
        Errno::XDEV => FerryError::denied("path leads outside the home directory"),
        Errno::LOOP => {
            FerryError::new(ErrorKind::InvalidInput, "too many levels of symbolic links")
        }
        e => io_error(e.into()),
    }
}

/// Whether the directory `dir` is on a filesystem of this machine's own
/// disks: not NFS, SMB/CIFS, FUSE (sshfs, s3fs, GlusterFS…), Ceph, Lustre,
/// GFS2, OCFS2, AFS or 9P. Unknown (the call failed): not local.
fn on_local_disk(dir: &OwnedFd) -> bool {
    const NETWORK: [u64; 11] = [
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x6573_5546, // FUSE
        0x00c3_6400, // Ceph
        0x0bd0_0bd0, // Lustre
        0x0116_1970, // GFS2
        0x7461_636f, // OCFS2
        0x5346_414f, // AFS
        0x0102_1997, // 9P
    ];
    match rustix::fs::fstatfs(dir) {
        Ok(fs) => !NETWORK.contains(&(fs.f_type as u64)),
        Err(_) => false,
    }
}

/// An account's home directory, held open, with the virtual folders
/// mounted into it.
#[derive(Debug, Clone)]
pub struct Home {
    /// The home's canonical path: for messages and keys only, never opened
    /// again after [`Home::open`].
    root: PathBuf,
    dir: Arc<OwnedFd>,
    /// Whether the home is on a local filesystem ([`on_local_disk`]).
    local: bool,
    /// Virtual folders mounted into the home ([`Home::mount`]).
    mounts: Arc<Vec<MountPoint>>,
}

/// A virtual folder's directory, held open, and where it appears in a home.
#[derive(Debug)]
struct MountPoint {
    /// The mount point's components inside the home.
    at: Vec<String>,
    dir: Arc<OwnedFd>,
    local: bool,
}

/// A name in a directory of the home, the directory held open: what is done
/// to the name never resolves a path again.
#[derive(Debug, Clone)]
pub struct Place {
    dir: Arc<OwnedFd>,
    name: String,
}

/// A file Ferry writes itself (a route's copy, a file pulled from a
/// partner, a folder monitor's ingest) before it takes its name: hidden,
/// in the name's directory, under a name of its own. Two writers of one
/// name (an event run again on another server while the first run still
/// writes, or a client's resumable upload to that name) never share a
/// file, so neither truncates nor renames away what the other writes.
#[derive(Debug)]
pub struct Scratch {
    /// Open for writing.
    pub file: File,
    name: String,
}

impl Home {
    /// Opens (creating if needed) the home `relative` under `repository`.
    pub fn open(repository: &Path, relative: &str) -> Result<Self, FerryError> {
        if !repository.is_dir() {
            return Err(FerryError::new(
                ErrorKind::Unavailable,
                "the repository is not available",
            ));
        }
        let rel = VirtualPath::parse_absolute(relative)?;
        let mut path = repository.to_path_buf();
        for c in rel.components() {
            path.push(c);
        }
        fs::create_dir_all(&path).map_err(io_error)?;
        let root = fs::canonicalize(&path).map_err(io_error)?;
        let dir = rustix::fs::open(
            &root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_error)?;
        Ok(Self {
            root,
            local: on_local_disk(&dir),
            dir: Arc::new(dir),
            mounts: Arc::default(),
        })
    }

    /// This home with the directory of `folder` (opened as [`Home::open`]
    /// opens a home) seen at `at`: paths at or below `at` lead into the
    /// folder, resolved beneath it as the home's are beneath the home. The
    /// mount point is made in the home too (an empty folder), so that
    /// listings show it; removing or renaming it, or a folder holding it,
    /// is refused.
    pub fn mount(mut self, at: &VirtualPath, folder: &Home) -> Result<Self, FerryError> {
        if at.is_root() {
            return Err(FerryError::invalid(
                "a virtual folder cannot replace the home",
            ));
        }
        if let Err(e) = self.create_dir_all(at) {
            // A file where the mount point goes: the mount hides it.
            tracing::warn!(home = %self.root.display(), mount = %at, error = %e,
                "cannot make a virtual folder's mount point in the home");
        }
        let mut mounts: Vec<MountPoint> = self
            .mounts
            .iter()
            .map(|m| MountPoint {
                at: m.at.clone(),
                dir: m.dir.clone(),
                local: m.local,
            })
            .collect();
        mounts.push(MountPoint {
            at: at.components().to_vec(),
            dir: folder.dir.clone(),
            local: folder.local,
        });
        // Deepest first, so the most specific mount decides.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
        self.mounts = Arc::new(mounts);
        Ok(self)
    }

    /// The directory `v` is resolved beneath (the home, or the virtual
    /// folder mounted over it) and `v`'s components below it.
    fn resolve<'a>(&'a self, v: &'a VirtualPath) -> (&'a Arc<OwnedFd>, &'a [String]) {
        let parts = v.components();
        match self.mount_of(v) {
            Some(m) => (&m.dir, parts.get(m.at.len()..).unwrap_or_default()),
            None => (&self.dir, parts),
        }
    }

    /// The virtual folder `v` lies in, if any (the deepest mount first).
    fn mount_of(&self, v: &VirtualPath) -> Option<&MountPoint> {
        let parts = v.components();
        self.mounts.iter().find(|m| parts.starts_with(&m.at))
    }

    /// Whether `v` lies on a local filesystem (the home's, or the virtual
    /// folder's mounted over it): where it does, opening, reading or
    /// writing a little of it takes microseconds, and may be done without
    /// a blocking thread; on a network filesystem a call may wait on a
    /// server for as long as it likes, and never runs on a runtime thread.
    pub fn is_local(&self, v: &VirtualPath) -> bool {
        self.mount_of(v).map_or(self.local, |m| m.local)
    }

    /// Refuses to remove or rename `v` when it is a mount point or holds
    /// one.
    fn check_not_mount(&self, v: &VirtualPath) -> Result<(), FerryError> {
        let parts = v.components();
        if self.mounts.iter().any(|m| m.at.starts_with(parts)) {
            return Err(FerryError::denied(format!(
                "{v} is or holds a virtual folder's mount point"
            )));
        }
        Ok(())
    }

    /// The home of account `name` (home directory `relative`) with the
    /// virtual folders mounted into it. A mount whose folder cannot be
    /// opened is left out and logged: the rest of the home still works.
    pub fn of_account(
        store: &Store,
        repository: &Path,
        name: &str,
        relative: &str,
    ) -> Result<Self, FerryError> {
        let mut home = Self::open(repository, relative)?;
        for (mount, folder_path) in store.mounts(Some(name)).map_err(FerryError::from)? {
            let at = VirtualPath::parse_absolute(&mount.path)?;
            match Self::open(repository, &folder_path) {
                Ok(folder) => home = home.mount(&at, &folder)?,
                Err(e) => tracing::warn!(account = %name, folder = %mount.folder,
                    error = %e, "cannot open a virtual folder; left out of the home"),
            }
        }
        Ok(home)
    }

    /// The home's real path on disk (for messages; never to be opened).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens `v` beneath the home with `flags`, following symlinks only
    /// while they stay inside it.
    pub fn open_at(
        &self,
        v: &VirtualPath,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, FerryError> {
        let (dir, rest) = self.resolve(v);
        beneath(dir, &relative(rest), flags, mode)
    }

    /// Opens the regular file `v` for reading. Non-blocking, so that a FIFO
    /// cannot stall the open; anything but a regular file is refused.
    pub fn read_file(&self, v: &VirtualPath) -> Result<(File, Metadata), FerryError> {
        let file = File::from(self.open_at(v, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?);
        let meta = file.metadata().map_err(io_error)?;
        if meta.is_dir() {
            return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
        }
        if !meta.is_file() {
            return Err(FerryError::new(ErrorKind::WrongType, "not a regular file"));
        }
        Ok((file, meta))
    }

    /// Attributes of `v`, following symlinks inside the home; `None` if it
    /// does not exist.
    pub fn metadata(&self, v: &VirtualPath) -> Result<Option<Metadata>, FerryError> {
        match self.open_at(v, OFlags::PATH, Mode::empty()) {
            Ok(fd) => File::from(fd).metadata().map(Some).map_err(io_error),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The directory that holds `v`, opened beneath the home, and `v`'s
    /// name in it. The home itself has no place.
    pub fn place(&self, v: &VirtualPath) -> Result<Place, FerryError> {
        let (base, rest) = self.resolve(v);
        let (parent, name) = match rest.split_last() {
            Some((name, parent)) => (parent, name),
            None if v.is_root() => return Err(FerryError::denied("the home directory itself")),
            None => return Err(FerryError::denied("a virtual folder itself")),
        };
        let dir = if parent.is_empty() {
            base.clone()
        } else {
            Arc::new(beneath(
                &**base,
                &relative(parent),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )?)
        };
        Ok(Place {
            dir,
            name: name.clone(),
        })
    }

    /// Creates the directory `v` and its missing parents. Existing folders
    /// on the way may be symlinks that stay inside the home.
    pub fn create_dir_all(&self, v: &VirtualPath) -> Result<(), FerryError> {
        let (base, parts) = self.resolve(v);
        for (n, part) in parts.iter().enumerate() {
            let prefix = relative(parts.get(..=n).unwrap_or_default());
            match beneath(
                &**base,
                &prefix,
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            ) {
                Ok(_) => continue,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let parent = if n == 0 {
                base.clone()
            } else {
                Arc::new(beneath(
                    &**base,
                    &relative(parts.get(..n).unwrap_or_default()),
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                )?)
            };
            match rustix::fs::mkdirat(&*parent, part.as_str(), Mode::from_raw_mode(0o750)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(errno_error(e)),
            }
        }
        Ok(())
    }

    /// Attributes of `v` as clients see them. While an upload to `v` is
    /// unfinished, its partial file is reported, so that a resuming client
    /// (`reput`) learns how much has arrived.
    pub fn stat(&self, v: &VirtualPath) -> Result<FileStat, FerryError> {
        if !v.is_root() {
            if let Ok(place) = self.place(v) {
                if let Some(partial) = place.partial_stat() {
                    return Ok(stat_of(&partial));
                }
            }
        }
        match self.metadata(v)? {
            Some(m) => Ok(file_stat(&m)),
            None => Err(FerryError::not_found("no such file or directory")),
        }
    }

    /// The directory listing of `v`, sorted by name, without Ferry's own
    /// files, without symlinks that lead outside the home, and without names
    /// no client could use (control characters, `..` between backslashes):
    /// every name listed can be opened, renamed and removed.
    pub fn list(&self, v: &VirtualPath) -> Result<Vec<DirEntry>, FerryError> {
        let mut out = self.listing(v)?.next_page(usize::MAX)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The listing of `v` a page at a time, in the directory's own order
    /// (what [`Home::list`] gives, unsorted): only the directory is held
    /// open, so a listing kept by a client costs no memory per entry.
    pub fn listing(&self, v: &VirtualPath) -> Result<Listing, FerryError> {
        let fd = self.open_at(v, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let (base, rest) = self.resolve(v);
        // Mount points directly in this folder show the folder mounted.
        let mounts = self
            .mounts
            .iter()
            .filter_map(|m| match m.at.split_last() {
                Some((name, parent)) if parent == v.components() => {
                    Some((name.clone(), m.dir.clone()))
                }
                _ => None,
            })
            .collect();
        Ok(Listing {
            home: base.clone(),
            base: relative(rest),
            entries: rustix::fs::Dir::new(fd).map_err(errno_error)?,
            mounts,
            done: false,
        })
    }

    /// Creates a directory.
    pub fn mkdir(&self, v: &VirtualPath, attrs: &SetAttrs) -> Result<(), FerryError> {
        if v.is_root() {
            return Err(FerryError::new(
                ErrorKind::AlreadyExists,
                "the home directory exists",
            ));
        }
        let place = self.place(v)?;
        let mode = attrs.permissions.unwrap_or(0o750) & DIR_MODE_MASK;
        // Made with the owner's bits so that it can be opened for the
        // fchmod below, whatever the mode asked.
        rustix::fs::mkdirat(
            &*place.dir,
            place.name.as_str(),
            Mode::from_raw_mode(mode | 0o700),
        )
        .map_err(errno_error)?;
        if attrs.permissions.is_some() {
            // Exactly what was asked (within the mask), whatever the umask.
            let made = place.open_nofollow(OFlags::RDONLY | OFlags::DIRECTORY)?;
            rustix::fs::fchmod(&made, Mode::from_raw_mode(mode)).map_err(errno_error)?;
        }
        Ok(())
    }

    /// Removes an empty directory (never the home itself).
    pub fn rmdir(&self, v: &VirtualPath) -> Result<(), FerryError> {
        if v.is_root() {
            return Err(FerryError::denied("the home directory cannot be removed"));
        }
        self.check_not_mount(v)?;
        let place = self.place(v)?;
        rustix::fs::unlinkat(&*place.dir, place.name.as_str(), AtFlags::REMOVEDIR)
            .map_err(errno_error)
    }

    /// Removes a file. Removing a path whose upload is unfinished discards
    /// the partial data.
    pub fn remove(&self, v: &VirtualPath) -> Result<(), FerryError> {
        if v.is_root() {
            return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
        }
        let place = self.place(v)?;
        match place.kind()? {
            Some(FileType::Directory) => {
                Err(FerryError::new(ErrorKind::WrongType, "is a directory"))
            }
            Some(_) => rustix::fs::unlinkat(&*place.dir, place.name.as_str(), AtFlags::empty())
                .map_err(errno_error),
            None if place.partial_stat().is_some() => place.remove_partial().map_err(io_error),
            None => Err(FerryError::not_found("no such file or directory")),
        }
    }

    /// Renames `from` to `to`. Without `overwrite` an existing target is an
    /// error (SFTP v3 semantics), checked atomically by the kernel; with it
    /// the target is atomically replaced.
    pub fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        overwrite: bool,
    ) -> Result<(), FerryError> {
        if from.is_root() || to.is_root() {
            return Err(FerryError::denied("the home directory cannot be renamed"));
        }
        self.check_not_mount(from)?;
        let (src, dst) = (self.place(from)?, self.place(to)?);
        src.rename_to(&dst, overwrite)
    }

    /// Makes `to` a second name of the regular file `from`
    /// (`hardlink@openssh.com`). Both are inside the home; `to` must not exist.
    pub fn hard_link(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), FerryError> {
        if from.is_root() || to.is_root() {
            return Err(FerryError::denied("the home directory cannot be linked"));
        }
        let (src, dst) = (self.place(from)?, self.place(to)?);
        match src.kind()? {
            Some(FileType::RegularFile) => {}
            Some(_) => return Err(FerryError::new(ErrorKind::WrongType, "not a regular file")),
            None => return Err(FerryError::not_found("no such file or directory")),
        }
        rustix::fs::linkat(
            &*src.dir,
            src.name.as_str(),
            &*dst.dir,
            dst.name.as_str(),
            AtFlags::empty(),
        )
        .map_err(errno_error)
    }

    /// Applies attributes to a path.
    pub fn set_attrs(&self, v: &VirtualPath, attrs: &SetAttrs) -> Result<(), FerryError> {
        let flags = if attrs.size.is_some() {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        let file = File::from(self.open_at(v, flags | OFlags::NONBLOCK, Mode::empty())?);
        apply_attrs(&file, attrs)
    }

    /// Filesystem statistics of the repository volume.
    pub fn statvfs(&self, v: &VirtualPath) -> Result<FsStats, FerryError> {
        let fd = self.open_at(v, OFlags::PATH, Mode::empty())?;
        let s = rustix::fs::fstatvfs(&fd).map_err(errno_error)?;
        Ok(FsStats {
            block_size: s.f_bsize,
            fragment_size: s.f_frsize,
            blocks: s.f_blocks,
            blocks_free: s.f_bfree,
            blocks_avail: s.f_bavail,
            files: s.f_files,
            files_free: s.f_ffree,
            files_avail: s.f_favail,
            fs_id: s.f_fsid,
            flags: s.f_flag.bits(),
            name_max: s.f_namemax,
        })
    }

    /// The virtual path a symlink inside the home points to. A link that
    /// leads outside the home, or nowhere, is answered as a missing file:
    /// the answer says nothing about what exists outside.
    pub fn read_link(&self, v: &VirtualPath) -> Result<String, FerryError> {
        let missing = || FerryError::not_found("no such file or directory");
        let place = self.place(v)?;
        match place.kind()? {
            Some(FileType::Symlink) => {}
            Some(_) => return Err(FerryError::invalid("not a symlink")),
            None => return Err(missing()),
        }
        let target = rustix::fs::readlinkat(&*place.dir, place.name.as_str(), Vec::new())
            .map_err(errno_error)?;
        let target = target.to_str().map_err(|_| missing())?;
        if target.starts_with('/') {
            return Err(missing());
        }
        // The target, relative to the link's directory, as a virtual path
        // (VirtualPath keeps `..` from climbing above the home).
        let parent = v.parent();
        let mut joined: Vec<&str> = parent.components().iter().map(String::as_str).collect();
        for c in target.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if joined.pop().is_none() {
                        return Err(missing());
                    }
                }
                c => joined.push(c),
            }
        }
        let path = VirtualPath::parse_absolute(&format!("/{}", joined.join("/")))
            .map_err(|_| missing())?;
        // It must lead somewhere inside the home.
        self.open_at(v, OFlags::PATH, Mode::empty())
            .map_err(|_| missing())?;
        Ok(path.to_string())
    }
}

/// A directory being listed ([`Home::listing`]).
#[derive(Debug)]
pub struct Listing {
    /// The directory symlinks are followed beneath (the home, or the
    /// virtual folder being listed).
    home: Arc<OwnedFd>,
    base: String,
    entries: rustix::fs::Dir,
    /// Names in this folder where a virtual folder is mounted, and its
    /// directory (whose attributes they show).
    mounts: Vec<(String, Arc<OwnedFd>)>,
    done: bool,
}

impl Listing {
    /// Up to `max` more entries; none once the directory is read to its end.
    pub fn next_page(&mut self, max: usize) -> Result<Vec<DirEntry>, FerryError> {
        let mut out = Vec::new();
        while out.len() < max && !self.done {
            let Some(entry) = self.entries.next() else {
                self.done = true;
                break;
            };
            let entry = entry.map_err(errno_error)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "."
                || name == ".."
                || name.starts_with(RESERVED_PREFIX)
                || ferry_core::path::check_component(name).is_err()
            {
                continue;
            }
            if let Some((_, mounted)) = self.mounts.iter().find(|(n, _)| n == name) {
                if let Ok(stat) = rustix::fs::fstat(&**mounted) {
                    out.push(DirEntry {
                        name: name.to_owned(),
                        stat: stat_of(&stat),
                    });
                }
                continue;
            }
            let dir = self.entries.fd().map_err(errno_error)?;
            let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let stat = if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                // Followed from the home, so it may not lead out of it.
                let path = if self.base == "." {
                    name.to_owned()
                } else {
                    format!("{}/{name}", self.base)
                };
                match beneath(&self.home, &path, OFlags::PATH, Mode::empty())
                    .and_then(|fd| rustix::fs::fstat(&fd).map_err(errno_error))
                {
                    Ok(target) => target,
                    Err(_) => continue,
                }
            } else {
                stat
            };
            out.push(DirEntry {
                name: name.to_owned(),
                stat: stat_of(&stat),
            });
        }
        Ok(out)
    }
}

impl Place {
    /// The name in its directory.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the partial file of an upload to this name.
    pub fn partial_name(&self) -> String {
        let name = &self.name;
        if name.len() + PARTIAL_PREFIX.len() <= 255 {
            format!("{PARTIAL_PREFIX}{name}")
        } else {
            use sha2::Digest;
            format!(
                "{PARTIAL_PREFIX}{}",
                hex::encode(sha2::Sha256::digest(name).get(..16).unwrap_or_default())
            )
        }
    }

    /// What identifies this place's partial file on this server, whatever
    /// path led to it: its directory's device and inode, and its name.
    pub fn partial_key(&self) -> PathBuf {
        let (dev, ino) = rustix::fs::fstat(&*self.dir)
            .map(|st| (st.st_dev, st.st_ino))
            .unwrap_or_default();
        PathBuf::from(format!("{dev}:{ino}")).join(self.partial_name())
    }

    /// The type of the name itself (a symlink is not followed); `None` if
    /// it does not exist.
    pub fn kind(&self) -> Result<Option<FileType>, FerryError> {
        match rustix::fs::statat(&*self.dir, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(errno_error(e)),
        }
    }

    /// Attributes of the partial file, if there is one.
    pub fn partial_stat(&self) -> Option<Stat> {
        rustix::fs::statat(
            &*self.dir,
            self.partial_name().as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .ok()
    }

    /// Opens the name itself; a symlink is refused.
    fn open_nofollow(&self, flags: OFlags) -> Result<OwnedFd, FerryError> {
        rustix::fs::openat(
            &*self.dir,
            self.name.as_str(),
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_error)
    }

    /// Opens (creating it with `mode`, within [`FILE_MODE_MASK`]) the
    /// partial file for reading and writing.
    pub fn open_partial(&self, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.dir,
            self.partial_name().as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & FILE_MODE_MASK),
        )?;
        Ok(File::from(fd))
    }

    /// Creates the partial file anew (truncating what was there).
    pub fn create_partial(&self) -> io::Result<File> {
        let file = self.open_partial(0o640)?;
        file.set_len(0)?;
        Ok(file)
    }

    /// Creates a new [`Scratch`] file for this name.
    pub fn create_scratch(&self) -> io::Result<Scratch> {
        loop {
            let name = format!("{SCRATCH_PREFIX}{:016x}", rand::random::<u64>());
            match rustix::fs::openat(
                &*self.dir,
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o640),
            ) {
                Ok(fd) => {
                    return Ok(Scratch {
                        file: File::from(fd),
                        name,
                    })
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Replaces the name by the scratch file, atomically, and syncs the
    /// directory.
    pub fn commit_scratch(&self, scratch: &Scratch) -> io::Result<()> {
        rustix::fs::renameat(
            &*self.dir,
            scratch.name.as_str(),
            &*self.dir,
            self.name.as_str(),
        )?;
        rustix::fs::fsync(&*self.dir)?;
        Ok(())
    }

    /// Removes a scratch file that will not be committed.
    pub fn remove_scratch(&self, scratch: &Scratch) -> io::Result<()> {
        rustix::fs::unlinkat(&*self.dir, scratch.name.as_str(), AtFlags::empty())?;
        Ok(())
    }

    /// Replaces the name by the partial file, atomically; with `fsync` the
    /// directory is synced so that the rename survives a crash.
    pub fn commit_partial(&self, fsync: bool) -> io::Result<()> {
        rustix::fs::renameat(
            &*self.dir,
            self.partial_name().as_str(),
            &*self.dir,
            self.name.as_str(),
        )?;
        if fsync {
            rustix::fs::fsync(&*self.dir)?;
        }
        Ok(())
    }

    /// Undoes [`Place::commit_partial`]: the file under the name goes back
    /// to being the partial file, and the directory is synced. For a commit
    /// whose row could not be written: the client is told the upload
    /// failed, so the file must not be found under its name.
    pub fn uncommit(&self) -> io::Result<()> {
        rustix::fs::renameat(
            &*self.dir,
            self.name.as_str(),
            &*self.dir,
            self.partial_name().as_str(),
        )?;
        rustix::fs::fsync(&*self.dir)?;
        Ok(())
    }

    /// Moves Ferry's own file `from` (outside any client's reach) to the
    /// name, replacing it atomically, and syncs the directory.
    pub fn receive(&self, from: &Path) -> io::Result<()> {
        rustix::fs::renameat(rustix::fs::CWD, from, &*self.dir, self.name.as_str())?;
        rustix::fs::fsync(&*self.dir)?;
        Ok(())
    }

    /// Removes the partial file.
    pub fn remove_partial(&self) -> io::Result<()> {
        rustix::fs::unlinkat(&*self.dir, self.partial_name().as_str(), AtFlags::empty())?;
        Ok(())
    }

    /// Syncs the directory (after a rename into it).
    pub fn sync_dir(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&*self.dir)?)
    }

    /// Renames this name to `to`. Without `overwrite` an existing target is
    /// refused atomically.
    pub fn rename_to(&self, to: &Place, overwrite: bool) -> Result<(), FerryError> {
        if self.kind()?.is_none() {
            return Err(FerryError::not_found("no such file or directory"));
        }
        let flags = if overwrite {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rustix::fs::renameat_with(
            &*self.dir,
            self.name.as_str(),
            &*to.dir,
            to.name.as_str(),
            flags,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(FerryError::new(ErrorKind::AlreadyExists, "target exists")),
            // A filesystem without RENAME_NOREPLACE: check, then rename.
            Err(Errno::INVAL) if !overwrite => {
                if to.kind()?.is_some() {
                    return Err(FerryError::new(ErrorKind::AlreadyExists, "target exists"));
                }
                rustix::fs::renameat(&*self.dir, self.name.as_str(), &*to.dir, to.name.as_str())
                    .map_err(errno_error)
            }
            Err(e) => Err(errno_error(e)),
        }
    }
}

/// `a/b/c` for the components, `.` for none.
fn relative(components: &[String]) -> String {
    if components.is_empty() {
        ".".to_owned()
    } else {
        components.join("/")
    }
}

/// Opens `path` beneath `dir`. The kernel refuses to leave `dir` (and
/// answers EAGAIN when a rename elsewhere raced with a `..`: retried).
fn beneath(dir: &impl AsFd, path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, FerryError> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, BENEATH) {
            Err(Errno::AGAIN | Errno::INTR) if tries < 32 => tries += 1,
            Err(Errno::NOSYS) => {
                return Err(FerryError::unavailable(
                    "this kernel has no openat2 (Linux 5.6 or later is required)",
                ))
            }
            other => return other.map_err(errno_error),
        }
    }
}

/// Applies size, permissions (within the masks) and times to an open file.
pub fn apply_attrs(file: &File, attrs: &SetAttrs) -> Result<(), FerryError> {
    if attrs.chown {
        return Err(FerryError::denied("changing owner or group is not allowed"));
    }
    if let Some(size) = attrs.size {
        file.set_len(size).map_err(io_error)?;
    }
    if let Some(p) = attrs.permissions {
        let is_dir = file.metadata().map_err(io_error)?.is_dir();
        let mask = if is_dir {
            DIR_MODE_MASK
        } else {
            FILE_MODE_MASK
        };
        file.set_permissions(fs::Permissions::from_mode(p & mask))
            .map_err(io_error)?;
    }
    if attrs.atime.is_some() || attrs.mtime.is_some() {
        let to_time = |s: u32| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.into());
        let mut times = fs::FileTimes::new();
        if let Some(a) = attrs.atime {
            times = times.set_accessed(to_time(a));
        }
        if let Some(m) = attrs.mtime {
            times = times.set_modified(to_time(m));
        }
        file.set_times(times).map_err(io_error)?;
    }
    Ok(())
}

/// Client-visible attributes from a `stat` result.
fn stat_of(st: &Stat) -> FileStat {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => FileKind::Dir,
        FileType::RegularFile => FileKind::File,
        _ => FileKind::Other,
    };
    let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
    FileStat {
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        permissions: st.st_mode & 0o777,
        atime: secs(st.st_atime),
        mtime: secs(st.st_mtime),
        mtime_nanos: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        inode: st.st_ino,
    }
}

/// Client-visible attributes of a file.
pub fn file_stat(m: &Metadata) -> FileStat {
    let kind = if m.is_dir() {
        FileKind::Dir
    } else if m.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
    FileStat {
        kind,
        size: m.len(),
        permissions: m.mode() & 0o777,
        atime: secs(m.atime()),
        mtime: secs(m.mtime()),
        mtime_nanos: u32::try_from(m.mtime_nsec()).unwrap_or(0),
        inode: m.ino(),
    }
}

/// The most directories deep [`sweep_leftovers`] goes.
const SWEEP_DEPTH: usize = 64;

/// Ferry's leftovers beneath `dir` (a home, or the whole repository) last
/// changed before `before_ms`: partial files of interrupted uploads
/// (`.ferry-partial.*`) and scratch files (`.ferry-scratch.*`); resumable
/// uploads (`.ferry-uploads/`) are [`crate::uploads::idle_before`]'s. With `remove`
/// they are removed; a file someone holds locked (an upload being written)
/// is left for the next sweep. Their paths relative to `dir`, sorted.
///
/// The walk holds each directory open and opens the next one beneath it
/// without following symlinks, so a rename meanwhile cannot lead it
/// elsewhere; nothing but these names is ever removed.
pub fn sweep_leftovers(
    dir: &impl AsFd,
    before_ms: i64,
    remove: bool,
) -> Result<Vec<String>, FerryError> {
    let start = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_error)?;
    let mut found = Vec::new();
    let mut stack: Vec<(OwnedFd, String, usize)> = vec![(start, String::new(), 0)];
    while let Some((fd, base, depth)) = stack.pop() {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd).map_err(errno_error)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        for name in names {
            let Ok(st) = rustix::fs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            let path = if base.is_empty() {
                name.clone()
            } else {
                format!("{base}/{name}")
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory
                    if depth < SWEEP_DEPTH && name != crate::uploads::UPLOADS_DIR =>
                {
                    if let Ok(sub) = rustix::fs::openat(
                        &fd,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        stack.push((sub, path, depth + 1));
                    }
                }
                FileType::RegularFile => {
                    let mtime_ms = st.st_mtime.saturating_mul(1000)
                        + i64::from(st.st_mtime_nsec as u32 / 1_000_000);
                    let leftover =
                        name.starts_with(PARTIAL_PREFIX) || name.starts_with(SCRATCH_PREFIX);
                    if !leftover || mtime_ms >= before_ms {
                        continue;
                    }
                    if remove && !remove_unlocked(&fd, &name) {
                        continue;
                    }
                    found.push(path);
                }
                _ => {}
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Removes file `name` of `dir` unless someone holds it locked; whether
/// it is gone.
fn remove_unlocked(dir: &impl AsFd, name: &str) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let file = File::from(fd);
    if file.try_lock().is_err() {
        return false;
    }
    // Unlinked while this lock is held: no writer can take the file now.
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok()
}

impl Home {
    /// [`sweep_leftovers`] of this home (its mounted folders are not in it).
    pub fn sweep_leftovers(&self, before_ms: i64, remove: bool) -> Result<Vec<String>, FerryError> {
        sweep_leftovers(&*self.dir, before_ms, remove)
    }

    /// The regular files directly in folder `v` (not Ferry's own) last
    /// modified before `before_ms`, by name.
    pub fn files_older_than(
        &self,
        v: &VirtualPath,
        before_ms: i64,
    ) -> Result<Vec<DirEntry>, FerryError> {
        Ok(self
            .list(v)?
            .into_iter()
            .filter(|e| {
                let mtime_ms =
                    i64::from(e.stat.mtime) * 1000 + i64::from(e.stat.mtime_nanos / 1_000_000);
                e.stat.kind == FileKind::File && mtime_ms < before_ms
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> VirtualPath {
        VirtualPath::parse_absolute(s).unwrap()
    }

    #[test]
    fn symlinks_out_of_home_are_refused() {
        let repo = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let home = Home::open(repo.path(), "alice").unwrap();
        let root = repo.path().join("alice");
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", root.join("up")).unwrap();
        std::fs::create_dir_all(root.join("in/deep")).unwrap();
        std::fs::write(root.join("in/f"), "inside").unwrap();
        std::os::unix::fs::symlink("in", root.join("inlink")).unwrap();
        std::os::unix::fs::symlink("../f", root.join("in/deep/back")).unwrap();
        // Absolute, even though it names a place inside: not followed.
        std::os::unix::fs::symlink(root.join("in"), root.join("abs")).unwrap();

        for p in ["/escape/secret", "/passwd", "/up/passwd", "/abs/f"] {
            let err = home.read_file(&v(p)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::PermissionDenied, "{p}: {err}");
            assert!(home.stat(&v(p)).is_err(), "{p}");
        }
        assert!(home.place(&v("/escape/new")).is_err());
        assert!(home.mkdir(&v("/escape/d"), &SetAttrs::default()).is_err());
        assert!(!outside.path().join("d").exists());
        assert_eq!(home.read_file(&v("/inlink/f")).unwrap().1.len(), 6);
        assert_eq!(home.read_file(&v("/in/deep/back")).unwrap().1.len(), 6);
        let names: Vec<_> = home
            .list(&v("/"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["in", "inlink"]);
        assert_eq!(home.read_link(&v("/inlink")).unwrap(), "/in");
        assert_eq!(home.read_link(&v("/in/deep/back")).unwrap(), "/in/f");
        // Out-pointing links read as missing files: nothing is learned
        // about what exists outside.
        for p in ["/passwd", "/escape", "/up", "/abs"] {
            assert_eq!(
                home.read_link(&v(p)).unwrap_err().kind,
                ErrorKind::NotFound,
                "{p}"
            );
        }
    }

    #[test]
    fn a_relative_link_moved_up_cannot_lead_out() {
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "carol").unwrap();
        let root = repo.path().join("carol");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(repo.path().join("secret"), "outside").unwrap();
        // Inside while it sits in /a/b; two levels up once /a/b is /b.
        std::os::unix::fs::symlink("../../secret", root.join("a/b/link")).unwrap();
        home.rename(&v("/a/b"), &v("/b"), false).unwrap();
        assert_eq!(
            home.read_file(&v("/b/link")).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn folders_are_made_through_inside_links_and_never_outside() {
        let repo = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "fay").unwrap();
        let root = repo.path().join("fay");
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("via")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        home.create_dir_all(&v("/via/a/b")).unwrap();
        assert!(root.join("real/a/b").is_dir());
        home.create_dir_all(&v("/via/a/b")).unwrap();
        assert!(home.create_dir_all(&v("/out/x")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A mode without the owner's bits is still applied.
        home.mkdir(
            &v("/locked"),
            &SetAttrs {
                permissions: Some(0o000),
                ..SetAttrs::default()
            },
        )
        .unwrap();
        let mode = std::fs::metadata(root.join("locked"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0);
    }

    #[test]
    fn two_writers_of_one_name_never_share_a_file() {
        use std::io::Write;
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "erin").unwrap();
        let place = home.place(&v("/in.dat")).unwrap();
        // A client's resumable upload to the name...
        let mut upload = place.open_partial(0o640).unwrap();
        upload.write_all(b"client bytes").unwrap();
        // ...and two runs of one route copying to it.
        let mut first = place.create_scratch().unwrap();
        let mut second = place.create_scratch().unwrap();
        first.file.write_all(b"copy").unwrap();
        second.file.write_all(b"copy").unwrap();
        place.commit_scratch(&first).unwrap();
        // The second run commits after the first: it replaces the file
        // with the same bytes instead of failing on a missing partial.
        place.commit_scratch(&second).unwrap();
        assert_eq!(std::fs::read(home.root().join("in.dat")).unwrap(), b"copy");
        assert_eq!(
            place.partial_stat().map(|s| s.st_size),
            Some(12),
            "the client's partial upload is untouched"
        );
        // Neither scratch file is left, and none is listed.
        let names: Vec<String> = std::fs::read_dir(home.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let abandoned = place.create_scratch().unwrap();
        place.remove_scratch(&abandoned).unwrap();
        let listed = home.list(&v("/")).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
    }

    #[test]
    fn modes_are_masked() {
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "dave").unwrap();
        let attrs = SetAttrs {
            permissions: Some(0o7777),
            ..SetAttrs::default()
        };
        home.mkdir(&v("/d"), &attrs).unwrap();
        let place = home.place(&v("/d/f")).unwrap();
        place.create_partial().unwrap();
        place.commit_partial(false).unwrap();
        home.set_attrs(&v("/d/f"), &attrs).unwrap();
        home.set_attrs(&v("/"), &attrs).unwrap();
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let root = home.root().to_str().unwrap().to_owned();
        assert_eq!(mode(&format!("{root}/d")), 0o750);
        assert_eq!(mode(&format!("{root}/d/f")), 0o640);
        assert_eq!(mode(&root), 0o750);
    }

    #[test]
    fn rename_without_overwrite_refuses_an_existing_target() {
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "erin").unwrap();
        for name in ["/x", "/y"] {
            let place = home.place(&v(name)).unwrap();
            place.create_partial().unwrap();
            place.commit_partial(false).unwrap();
        }
        assert_eq!(
            home.rename(&v("/x"), &v("/y"), false).unwrap_err().kind,
            ErrorKind::AlreadyExists
        );
        home.rename(&v("/x"), &v("/y"), true).unwrap();
        assert!(home.metadata(&v("/x")).unwrap().is_none());
    }

    #[test]
    fn home_cannot_be_removed_or_renamed() {
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "bob").unwrap();
        assert!(home.rmdir(&v("/")).is_err());
        assert!(home.rename(&v("/"), &v("/x"), false).is_err());
        assert!(Home::open(repo.path(), "../../etc")
            .unwrap()
            .root
            .starts_with(repo.path().canonicalize().unwrap()));
    }

    #[test]
    fn a_mounted_folder_is_shared_and_stays_closed_beneath() {
        let repo = tempfile::tempdir().unwrap();
        let shared = Home::open(repo.path(), "shared/acme-out").unwrap();
        std::fs::write(repo.path().join("secret"), "x").unwrap();
        let acme = Home::open(repo.path(), "acme")
            .unwrap()
            .mount(&v("/outbox"), &shared)
            .unwrap();
        let team = Home::open(repo.path(), "team")
            .unwrap()
            .mount(&v("/partners/acme"), &shared)
            .unwrap();
        // Written through one home, read through the other, stored once.
        let place = acme.place(&v("/outbox/report.csv")).unwrap();
        let mut scratch = place.create_scratch().unwrap();
        std::io::Write::write_all(&mut scratch.file, b"rows").unwrap();
        place.commit_scratch(&scratch).unwrap();
        let (mut file, _) = team.read_file(&v("/partners/acme/report.csv")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "rows");
        assert!(repo.path().join("shared/acme-out/report.csv").is_file());
        assert!(!repo.path().join("acme/outbox/report.csv").exists());
        // Listings show the mount point (and what is in the folder).
        let names = |h: &Home, p: &str| -> Vec<String> {
            h.list(&v(p)).unwrap().into_iter().map(|e| e.name).collect()
        };
        assert_eq!(names(&team, "/partners"), ["acme"]);
        assert_eq!(names(&team, "/partners/acme"), ["report.csv"]);
        assert_eq!(team.stat(&v("/partners/acme")).unwrap().kind, FileKind::Dir);
        // The mount point and what holds it cannot go away.
        assert!(team.rmdir(&v("/partners/acme")).is_err());
        assert!(team.rename(&v("/partners"), &v("/p"), false).is_err());
        assert!(team.rename(&v("/partners/acme"), &v("/a"), false).is_err());
        assert!(team.remove(&v("/partners/acme")).is_err());
        // A symlink in the folder cannot lead out of it.
        std::os::unix::fs::symlink("../../secret", repo.path().join("shared/acme-out/up")).unwrap();
        assert!(acme.read_file(&v("/outbox/up")).is_err());
        // Files can move between the home and the folder.
        std::fs::write(repo.path().join("acme/mine.txt"), "m").unwrap();
        acme.rename(&v("/mine.txt"), &v("/outbox/mine.txt"), false)
            .unwrap();
        assert!(repo.path().join("shared/acme-out/mine.txt").is_file());
    }

    #[test]
    fn a_path_is_local_where_its_home_or_folder_is() {
        let repo = tempfile::tempdir().unwrap();
        let home = Home::open(repo.path(), "alice").unwrap();
        assert!(
            home.is_local(&v("/in/box")),
            "a temporary directory is local"
        );
        // A folder on a network filesystem decides for what is beneath it.
        let mut remote = Home::open(repo.path(), "shared").unwrap();
        remote.local = false;
        let home = home.mount(&v("/partners"), &remote).unwrap();
        assert!(!home.is_local(&v("/partners")));
        assert!(!home.is_local(&v("/partners/acme/file")));
        assert!(home.is_local(&v("/partnersx/file")));
        assert!(home.is_local(&v("/in/file")));
    }

    #[test]
    fn missing_repository_is_unavailable() {
        let err = Home::open(Path::new("/nonexistent/ferry/repo"), "a").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
    }
}
