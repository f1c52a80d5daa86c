//! Export file downloads (§7): streamed from the sink, never read whole; `Range` for resumed
//! downloads (206), `Content-Encoding: gzip` when the client accepts it (F4), `HEAD`. The same
//! for every sink: with S3 these are the proxied file URLs (presigned ones bypass us).

use crate::app::AppState;
use crate::auth::Caller;
use crate::base::Base;
use crate::engine::JobParams;
use crate::error::ApiError;
use crate::sink::STREAM_BUFFER;
use crate::status::visible_job;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use fhir_bulk_spec::scope::Permissions;
use fhir_bulk_store::FileKind;
use tokio_util::io::{ReaderStream, StreamReader};

/// `GET`/`HEAD` on a file URL of the manifest.
pub async fn download(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path((job_id, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &base, &caller, &job_id).await?;
    // Only files committed with their unit are served (never a `.part` or a stray attempt).
    let files = state.store.files(&job.id).await?;
    let file = files
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("export job {job_id} has no file '{name}'")))?;
    // ST8: the token must cover what the file holds (error files hold OperationOutcomes;
    // organized files hold every type of the export).
    let params = JobParams::of(&job).map_err(ApiError::Internal)?;
    if params.request.organize_output_by.is_some() && file.kind == FileKind::Output {
        for t in &params.types {
            caller.require(t, Permissions::READ, "read")?;
        }
    } else if file.kind != FileKind::Error {
        caller.require(&file.resource_type, Permissions::READ, "read")?;
    }
    // Ranges are checked against the size committed with the file; the sink's own size
    // must agree, or the file was changed behind our back.
    let size = file.bytes;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) => Some(parse_range(range, size)?),
        None => None,
    };
    let gzip = range.is_none() && accepts_gzip(&headers);
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, fhir_bulk_spec::FHIR_NDJSON)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}-{}\"", job.id, file.name))
        .header(header::CACHE_CONTROL, "private, no-store");
    builder = match range {
        Some((start, end)) => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
            .header(header::CONTENT_LENGTH, end - start + 1),
        // Compressed on the fly at a fast level; the length is unknown, so it is chunked.
        None if gzip => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_ENCODING, "gzip")
            .header(header::VARY, "accept-encoding"),
        None => builder
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size)
            .header(header::VARY, "accept-encoding"),
    };
    let sink_error = |e: std::io::Error| {
        ApiError::Internal(format!("reading file {} of job {}: {e}", file.name, job.id))
    };
    let check_size = |found: u64| {
        (found == size).then_some(()).ok_or_else(|| {
            ApiError::Internal(format!(
                "file {} of job {} has {found} bytes in the sink but {size} were committed",
                file.name, job.id
            ))
        })
    };

    if method == Method::HEAD {
        // The headers of the GET without reading the file (on S3 a HEAD, not a GET).
        let found = state
            .sink
            .size(&job.id, &file.name)
            .await
            .map_err(sink_error)?;
        check_size(found)?;
        return builder
            .body(Body::empty())
            .map_err(|e| ApiError::Internal(e.to_string()));
    }

    let read = state
        .sink
        .open(
            &job.id,
            &file.name,
            range.map(|(start, end)| start..end + 1),
        )
        .await
        .map_err(sink_error)?;
    check_size(read.size)?;
    let body = if gzip {
        let encoder = async_compression::tokio::bufread::GzipEncoder::with_quality(
            StreamReader::new(read.stream),
            async_compression::Level::Fastest,
        );
        Body::from_stream(ReaderStream::with_capacity(encoder, STREAM_BUFFER))
    } else {
        Body::from_stream(read.stream)
    };
    builder
        .body(body)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// True when `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

/// One `bytes=` range (`a-b`, `a-`, `-n`) of a file of `size` bytes, as inclusive offsets.
fn parse_range(value: &str, size: u64) -> Result<(u64, u64), ApiError> {
    let bad = |why: &str| ApiError::RangeNotSatisfiable {
        message: format!("Range '{value}': {why}"),
        size,
    };
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| bad("only bytes ranges are supported"))?;
    if spec.contains(',') {
        return Err(bad("only one range per request is supported"));
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| bad("expected start-end"))?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| bad("bad suffix length"))?;
        if n == 0 {
            return Err(bad("empty suffix"));
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| bad("bad start"))?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| bad("bad end"))?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start >= size || end < start {
        return Err(bad(&format!("outside the file of {size} bytes")));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), (0, 9));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), (90, 99));
        assert_eq!(parse_range("bytes=50-500", 100).unwrap(), (50, 99));
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-1", 100).is_err());
        assert!(parse_range("items=0-1", 100).is_err());
        assert!(parse_range("bytes=0-1,5-6", 100).is_err());
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("deflate, gzip;q=0.5"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
    }
}
