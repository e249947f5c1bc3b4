//! An account's home in the repository, and every filesystem operation on it.
//!
//! [`Home::resolve`] is the confinement wrapper: it maps a canonical
//! [`VirtualPath`] onto the disk one component at a time, and a symlink is
//! followed only if its target stays inside the home. Everything else here
//! checks, then delegates to `std::fs`.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_core::path::RESERVED_PREFIX;
use ferry_core::{ErrorKind, FerryError, VirtualPath};
use ferry_proto::message::{DirEntry, FileKind, FileStat, FsStats, SetAttrs};

/// Prefix of partial-upload files, inside [`RESERVED_PREFIX`].
const PARTIAL_PREFIX: &str = ".ferry-partial.";

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

/// An account's home directory, canonical on disk.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
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
        Ok(Self { root })
    }

    /// The home's real path on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of `v`, following symlinks only while they stay inside
    /// the home. Components past the first missing one are appended as they
    /// are (they will be created or reported missing by the caller).
    pub fn resolve(&self, v: &VirtualPath) -> Result<PathBuf, FerryError> {
        let mut real = self.root.clone();
        let mut rest = v.components().iter();
        for c in rest.by_ref() {
            real.push(c);
            match fs::symlink_metadata(&real) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::canonicalize(&real).map_err(io_error)?;
                    if !target.starts_with(&self.root) {
                        return Err(FerryError::denied("path leads outside the home directory"));
                    }
                    real = target;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_error(e)),
            }
        }
        for c in rest {
            real.push(c);
        }
        Ok(real)
    }

    /// The partial-upload file of the upload to `final_path`.
    pub fn partial_path(final_path: &Path) -> Option<PathBuf> {
        let name = final_path.file_name()?.to_str()?;
        let partial = if name.len() + PARTIAL_PREFIX.len() <= 255 {
            format!("{PARTIAL_PREFIX}{name}")
        } else {
            use sha2::Digest;
            format!(
                "{PARTIAL_PREFIX}{}",
                hex::encode(&sha2::Sha256::digest(name)[..16])
            )
        };
        Some(final_path.with_file_name(partial))
    }

    /// Attributes of `v` as clients see them. While an upload to `v` is
    /// unfinished, its partial file is reported, so that a resuming client
    /// (`reput`) learns how much has arrived.
    pub fn stat(&self, v: &VirtualPath) -> Result<FileStat, FerryError> {
        let real = self.resolve(v)?;
        if let Some(partial) = Self::partial_path(&real) {
            if let Ok(m) = fs::metadata(&partial) {
                return Ok(file_stat(&m));
            }
        }
        fs::metadata(&real).map(|m| file_stat(&m)).map_err(io_error)
    }

    /// The directory listing of `v`, without Ferry's own files, without
    /// symlinks that lead outside the home, and without names no client
    /// could use (control characters, `..` between backslashes): every
    /// name listed can be opened, renamed and removed.
    pub fn list(&self, v: &VirtualPath) -> Result<Vec<DirEntry>, FerryError> {
        let real = self.resolve(v)?;
        let mut out = Vec::new();
        for entry in fs::read_dir(&real).map_err(io_error)? {
            let entry = entry.map_err(io_error)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with(RESERVED_PREFIX)
                || ferry_core::path::check_component(&name).is_err()
            {
                continue;
            }
            let path = entry.path();
            let meta = match entry.file_type() {
                Ok(t) if t.is_symlink() => match fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&self.root) => fs::metadata(&target),
                    _ => continue,
                },
                _ => fs::metadata(&path),
            };
            if let Ok(meta) = meta {
                out.push(DirEntry {
                    name,
                    stat: file_stat(&meta),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates a directory.
    pub fn mkdir(&self, v: &VirtualPath, attrs: &SetAttrs) -> Result<(), FerryError> {
        if v.is_root() {
            return Err(FerryError::new(
                ErrorKind::AlreadyExists,
                "the home directory exists",
            ));
        }
        let real = self.resolve(v)?;
        fs::create_dir(&real).map_err(io_error)?;
        if let Some(p) = attrs.permissions {
            fs::set_permissions(&real, fs::Permissions::from_mode(p & 0o777)).map_err(io_error)?;
        }
        Ok(())
    }

    /// Removes an empty directory (never the home itself).
    pub fn rmdir(&self, v: &VirtualPath) -> Result<(), FerryError> {
        if v.is_root() {
            return Err(FerryError::denied("the home directory cannot be removed"));
        }
        fs::remove_dir(self.resolve(v)?).map_err(io_error)
    }

    /// Removes a file. Removing a path whose upload is unfinished discards
    /// the partial data.
    pub fn remove(&self, v: &VirtualPath) -> Result<(), FerryError> {
        let real = self.resolve(v)?;
        match fs::symlink_metadata(&real) {
            Ok(m) if m.is_dir() => Err(FerryError::new(ErrorKind::WrongType, "is a directory")),
            Ok(_) => fs::remove_file(&real).map_err(io_error),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match Self::partial_path(&real) {
                Some(partial) if partial.exists() => fs::remove_file(partial).map_err(io_error),
                _ => Err(io_error(e)),
            },
            Err(e) => Err(io_error(e)),
        }
    }

    /// Renames `from` to `to`. Without `overwrite` an existing target is an
    /// error (SFTP v3 semantics); with it the target is atomically replaced.
    pub fn rename(
        &self,
        from: &VirtualPath,
        to: &VirtualPath,
        overwrite: bool,
    ) -> Result<(), FerryError> {
        if from.is_root() || to.is_root() {
            return Err(FerryError::denied("the home directory cannot be renamed"));
        }
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        fs::symlink_metadata(&src).map_err(io_error)?;
        if !overwrite && fs::symlink_metadata(&dst).is_ok() {
            return Err(FerryError::new(ErrorKind::AlreadyExists, "target exists"));
        }
        fs::rename(&src, &dst).map_err(io_error)
    }

    /// Makes `to` a second name of the regular file `from`
    /// (`hardlink@openssh.com`). Both are inside the home; `to` must not exist.
    pub fn hard_link(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), FerryError> {
        if from.is_root() || to.is_root() {
            return Err(FerryError::denied("the home directory cannot be linked"));
        }
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        if !fs::symlink_metadata(&src).map_err(io_error)?.is_file() {
            return Err(FerryError::new(ErrorKind::WrongType, "not a regular file"));
        }
        fs::hard_link(&src, &dst).map_err(io_error)
    }

    /// Applies attributes to a path.
    pub fn set_attrs(&self, v: &VirtualPath, attrs: &SetAttrs) -> Result<(), FerryError> {
        let real = self.resolve(v)?;
        let meta = fs::metadata(&real).map_err(io_error)?;
        let file = if attrs.size.is_some() {
            if meta.is_dir() {
                return Err(FerryError::new(ErrorKind::WrongType, "is a directory"));
            }
            fs::OpenOptions::new().write(true).open(&real)
        } else {
            File::open(&real)
        }
        .map_err(io_error)?;
        apply_attrs(&file, attrs)
    }

    /// Filesystem statistics of the repository volume.
    pub fn statvfs(&self, v: &VirtualPath) -> Result<FsStats, FerryError> {
        let real = self.resolve(v)?;
        let s = rustix::fs::statvfs(&real).map_err(|e| io_error(e.into()))?;
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

    /// The virtual path a symlink inside the home points to.
    pub fn read_link(&self, v: &VirtualPath) -> Result<String, FerryError> {
        let mut link = self.root.clone();
        for c in v.parent().components() {
            link.push(c);
        }
        let parent = fs::canonicalize(&link).map_err(io_error)?;
        let name = v
            .file_name()
            .ok_or_else(|| FerryError::invalid("not a symlink"))?;
        let link = parent.join(name);
        if !fs::symlink_metadata(&link)
            .map_err(io_error)?
            .file_type()
            .is_symlink()
        {
            return Err(FerryError::invalid("not a symlink"));
        }
        let target = fs::canonicalize(&link).map_err(io_error)?;
        let inside = target
            .strip_prefix(&self.root)
            .map_err(|_| FerryError::denied("link leads outside the home directory"))?;
        Ok(format!("/{}", inside.display()))
    }
}

/// Applies size, permissions and times to an open file.
pub fn apply_attrs(file: &File, attrs: &SetAttrs) -> Result<(), FerryError> {
    if attrs.chown {
        return Err(FerryError::denied("changing owner or group is not allowed"));
    }
    if let Some(size) = attrs.size {
        file.set_len(size).map_err(io_error)?;
    }
    if let Some(p) = attrs.permissions {
        file.set_permissions(fs::Permissions::from_mode(p & 0o777))
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
        std::fs::create_dir(root.join("in")).unwrap();
        std::os::unix::fs::symlink(root.join("in"), root.join("inlink")).unwrap();

        assert_eq!(
            home.resolve(&v("/escape/secret")).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            home.stat(&v("/passwd")).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
        assert!(home
            .resolve(&v("/inlink/x"))
            .unwrap()
            .starts_with(root.canonicalize().unwrap()));
        let names: Vec<_> = home
            .list(&v("/"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["in", "inlink"]);
        assert_eq!(home.read_link(&v("/inlink")).unwrap(), "/in");
        assert_eq!(
            home.read_link(&v("/passwd")).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
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
    fn missing_repository_is_unavailable() {
        let err = Home::open(Path::new("/nonexistent/ferry/repo"), "a").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
    }
}
