//! Which files a load reads: file formats by name, and the walk of folders.

use super::IngestError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The formats we load, known by file name (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.ndjson`: one resource per line.
    Ndjson,
    /// `.ndjson.gz`: gzip-compressed NDJSON (several gzip members are read as one stream,
    /// as `cat a.gz b.gz` makes).
    NdjsonGz,
    /// `.json`: a Bundle of type collection, transaction or batch, or a single resource.
    Json,
}

impl Format {
    /// The format of a file by its name; `None` for names we do not load.
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".ndjson") {
            Some(Format::Ndjson)
        } else if name.ends_with(".ndjson.gz") {
            Some(Format::NdjsonGz)
        } else if name.ends_with(".json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// One file to load.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) format: Format,
    /// Size on disk, for progress.
    pub(super) size: u64,
}

/// The files of a load, in load order, and those skipped.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) sources: Vec<Source>,
    pub(super) skipped: Vec<PathBuf>,
}

/// Expands the paths given into files (blocking I/O). Paths keep their order; a folder
/// contributes its files recursively, sorted by path. Inside folders, hidden entries (`.`
/// names: editor and VCS files) are ignored and unknown formats skipped; a file named
/// explicitly must have a known format.
pub(super) fn discover(paths: &[PathBuf]) -> Result<Found, IngestError> {
    let mut found = Found::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, &mut HashSet::new(), &mut files)?;
            files.sort();
            for file in files {
                match Format::of(&file) {
                    Some(format) => {
                        let size = std::fs::metadata(&file).map_err(|e| io(&file, e))?.len();
                        found.sources.push(Source {
                            path: file,
                            format,
                            size,
                        });
                    }
                    None => found.skipped.push(file),
                }
            }
        } else {
            let format = Format::of(path)
                .ok_or_else(|| IngestError::UnknownFormat { path: path.clone() })?;
            found.sources.push(Source {
                path: path.clone(),
                format,
                size: meta.len(),
            });
        }
    }
    Ok(found)
}

/// Collects the non-hidden files under `dir`. Symbolic links are followed; `seen` (canonical
/// folder paths) stops a link cycle from walking forever.
fn walk(
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> Result<(), IngestError> {
    let canonical = dir.canonicalize().map_err(|e| io(dir, e))?;
    if !seen.insert(canonical) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path).map_err(|e| io(&path, e))?.is_dir() {
            walk(&path, seen, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> IngestError {
    IngestError::Io {
        path: path.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(
            Format::of(Path::new("a/Patient.ndjson")),
            Some(Format::Ndjson)
        );
        assert_eq!(
            Format::of(Path::new("Patient.NDJSON.GZ")),
            Some(Format::NdjsonGz)
        );
        assert_eq!(Format::of(Path::new("bundle.json")), Some(Format::Json));
        assert_eq!(Format::of(Path::new("README.md")), None);
        assert_eq!(Format::of(Path::new("x.json.gz")), None);
        assert_eq!(Format::of(Path::new("ndjson")), None);
    }
}
