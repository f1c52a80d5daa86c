//! The manifest of a job, built from its committed files (M1–M7), whole or in pages
//! (`allowPartialManifests`, ST4, M8).
//!
//! The page model: page *n* lists the files of the *n*-th unit to complete (in the order the
//! store numbered completions, `Unit::done_seq`), counting only units that wrote files. A
//! unit's files commit in the same transaction as its completion and completions are only
//! ever added, so a page once it exists never changes; the only change a client can see is
//! the `next` link that page *n* gains once page *n*+1 exists (ST4). Page 1 is the status URL
//! itself, page *n* is `?page=n`. While the job runs, each page comes with `202` (a partial
//! manifest); once it completes, the same pages come with `200`, all linked.
//!
//! Without `allowPartialManifests` there is one manifest with every file and no `link`.
//!
//! File URLs are ours (`bulk-files/...`), or with presigned S3 URLs (M3:
//! `requiresAccessToken: false`) signed afresh for each request, which ST4 and F1 allow
//! ("refresh expired URLs"): only the signature and its expiry differ between two fetches.

use crate::app::AppState;
use crate::base::Base;
use crate::engine::JobParams;
use crate::error::ApiError;
use fhir_bulk_spec::manifest::{Link, Manifest, OutputFile};
use fhir_bulk_store::{FileKind, Job, JobFile, Unit};
use std::collections::HashMap;

/// What a status request asked for: the manifest (page 1) or `?page=n`.
pub(crate) fn requested_page(query: Option<&str>) -> Result<usize, ApiError> {
    let mut page = 1;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "page" {
            page = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "page '{v}' is not a page number; follow the manifest's link.next (M8)"
                ))
            })?;
        }
    }
    Ok(page)
}

/// How the manifests of one job are written.
pub(crate) struct Manifests<'a> {
    base: &'a Base,
    job: &'a Job,
    requires_access_token: bool,
    organized_by: Option<String>,
    paged: bool,
    /// Presigned URLs by file name; files not in it get our own URL.
    signed: HashMap<String, String>,
}

impl<'a> Manifests<'a> {
    /// For `job`, whose parameters say whether output is organized and manifests paged.
    pub(crate) fn new(
        base: &'a Base,
        job: &'a Job,
        requires_access_token: bool,
    ) -> Result<Self, ApiError> {
        let params = JobParams::of(job).map_err(ApiError::Internal)?;
        Ok(Manifests {
            base,
            job,
            requires_access_token,
            organized_by: params.request.organize_output_by,
            paged: params.request.allow_partial_manifests,
            signed: HashMap::new(),
        })
    }

    /// Uses these presigned URLs (by file name) instead of ours.
    pub(crate) fn with_signed_urls(mut self, signed: HashMap<String, String>) -> Self {
        self.signed = signed;
        self
    }

    /// True with `allowPartialManifests`: the manifest comes in pages, partial ones first.
    pub(crate) fn paged(&self) -> bool {
        self.paged
    }

    /// The manifest page `page` of a job as far as it got (`done`: the job completed).
    /// `None` while a running job has no page yet (or no paging), so the 202 has no body.
    /// A page that does not exist is a 404.
    pub(crate) fn page(
        &self,
        units: &[Unit],
        files: &[JobFile],
        page: usize,
        done: bool,
    ) -> Result<Option<Manifest>, ApiError> {
        let missing = || {
            ApiError::NotFound(format!(
                "export job {} has no manifest page {page}{}",
                self.job.id,
                if done { "" } else { " yet" }
            ))
        };
        if !self.paged {
            return match (page, done) {
                (1, true) => Ok(Some(self.manifest(files.iter(), None))),
                (1, false) => Ok(None),
                _ => Err(missing()),
            };
        }
        let pages = pages(units, files);
        if pages.is_empty() && page == 1 {
            // A completed job that wrote no file still has its (empty) manifest.
            return Ok(done.then(|| self.manifest([].iter(), None)));
        }
        let this = pages.get(page - 1).ok_or_else(missing)?;
        let next = (page < pages.len()).then(|| {
            self.base
                .join(&format!("bulk-status/{}?page={}", self.job.id, page + 1))
        });
        Ok(Some(self.manifest(this.iter().copied(), next)))
    }

    /// M1–M7 over `files`, in the order given; M8 `next` when given.
    fn manifest<'f>(
        &self,
        files: impl Iterator<Item = &'f JobFile> + Clone,
        next: Option<String>,
    ) -> Manifest {
        let entry = |f: &JobFile| OutputFile {
            // M4: organized files hold many types and carry no `type`.
            resource_type: (f.kind != FileKind::Output || self.organized_by.is_none())
                .then(|| f.resource_type.clone()),
            url: self.signed.get(&f.name).cloned().unwrap_or_else(|| {
                self.base
                    .join(&format!("bulk-files/{}/{}", self.job.id, f.name))
            }),
            count: Some(f.count),
            continues_in_file: None,
        };
        let of = |kind: FileKind| {
            files
                .clone()
                .filter(|f| f.kind == kind)
                .map(entry)
                .collect::<Vec<_>>()
        };
        Manifest {
            transaction_time: self.job.transaction_time.to_string(),
            request: self.job.request_url.clone(),
            requires_access_token: self.requires_access_token,
            output_organized_by: self.organized_by.clone(),
            output: of(FileKind::Output),
            deleted: of(FileKind::Deleted),
            error: of(FileKind::Error),
            link: next
                .map(|url| Link {
                    relation: "next".into(),
                    url,
                })
                .into_iter()
                .collect(),
            extension: None,
        }
    }
}

/// Presigned URLs of `files` by name, valid until the job expires at the latest. Every
/// file gets one: the manifest then says no token is needed (M3), so none may be missing.
pub(crate) async fn presigned_urls(
    state: &AppState,
    job: &Job,
    files: &[JobFile],
) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::with_capacity(files.len());
    for f in files {
        let url = state
            .sink
            .presigned_url(&job.id, &f.name, job.expires_at)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot presign {}: {e}", f.name)))?
            .ok_or_else(|| ApiError::Internal("this sink cannot presign file URLs".into()))?;
        out.insert(f.name.clone(), url.to_string());
    }
    Ok(out)
}

/// The pages: the files of each completed unit that wrote any, in completion order.
fn pages<'f>(units: &[Unit], files: &'f [JobFile]) -> Vec<Vec<&'f JobFile>> {
    let mut done: Vec<&Unit> = units.iter().filter(|u| u.done).collect();
    done.sort_by_key(|u| (u.done_seq, u.seq));
    done.iter()
        .map(|u| {
            files
                .iter()
                .filter(|f| f.unit_seq == u.seq)
                .collect::<Vec<_>>()
        })
        .filter(|page| !page.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fhir_bulk_store::UnitKind;

    fn unit(seq: i64, done_seq: Option<i64>) -> Unit {
        Unit {
            job_id: "j".into(),
            seq,
            resource_type: "Patient".into(),
            kind: UnitKind::Output,
            estimate: 0,
            done: done_seq.is_some(),
            written: 0,
            attempts: 1,
            done_seq,
            ids: fhir_bulk_store::IdRange::all(),
        }
    }

    fn file(name: &str, unit_seq: i64) -> JobFile {
        JobFile {
            name: name.into(),
            unit_seq,
            kind: FileKind::Output,
            resource_type: "Patient".into(),
            count: 1,
            bytes: 1,
        }
    }

    /// ST4: pages follow completion order, skip units without files, and only grow.
    #[test]
    fn pages_follow_completion_order_st4() {
        let files = [file("a", 0), file("b1", 1), file("b2", 1), file("c", 2)];
        let names = |p: Vec<Vec<&JobFile>>| -> Vec<Vec<String>> {
            p.iter()
                .map(|f| f.iter().map(|f| f.name.clone()).collect())
                .collect()
        };
        // Unit 1 finished first, unit 3 (no files) second, unit 0 third; 2 still runs.
        let units = [
            unit(0, Some(3)),
            unit(1, Some(1)),
            unit(2, None),
            unit(3, Some(2)),
        ];
        let before = names(pages(&units, &files[..3]));
        assert_eq!(before, vec![vec!["b1", "b2"], vec!["a"]]);
        let units = [
            unit(0, Some(3)),
            unit(1, Some(1)),
            unit(2, Some(4)),
            unit(3, Some(2)),
        ];
        let after = names(pages(&units, &files));
        assert_eq!(after[..2], before[..]);
        assert_eq!(after[2], vec!["c"]);
    }
}
