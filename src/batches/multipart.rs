//! A streaming reader of `multipart/form-data` (RFC 7578), for `POST /v1/files`.
//!
//! Why here and not a crate: the maintained readers (`actix-multipart`, `multer`) are not among
//! the crates this project can build with (no network on the build machine); this one is the
//! small part an upload needs, on `httparse` for the part headers and `memchr` for the
//! delimiter. A part's data is handed out as it arrives, never buffered whole, so a file the
//! size of `--max-file-bytes` costs a few chunks of memory. Headers and the preamble are
//! bounded.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use std::fmt::Display;

/// The most bytes before the first delimiter (a preamble) or in one part's headers.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers a part may have.
const MAX_HEADERS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MultipartError {
    #[error("the body is not multipart/form-data with a boundary")]
    NoBoundary,
    #[error("the multipart body ended early")]
    Truncated,
    #[error("a multipart part's headers are malformed or over {MAX_HEAD} bytes")]
    BadHeaders,
    #[error("a multipart part has no `Content-Disposition: form-data; name=...`")]
    NoName,
    #[error("could not read the request body: {0}")]
    Read(String),
    #[error("the multipart body is larger than {0} bytes")]
    TooLarge(u64),
}

/// One part's headers: its form field name, and the file name if it is a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mime: actix_web::mime::Mime = content_type
        .parse()
        .map_err(|_| MultipartError::NoBoundary)?;
    if mime.type_() != actix_web::mime::MULTIPART || mime.subtype() != actix_web::mime::FORM_DATA {
        return Err(MultipartError::NoBoundary);
    }
    let boundary = mime
        .get_param(actix_web::mime::BOUNDARY)
        .map(|b| b.as_str().to_string())
        .ok_or(MultipartError::NoBoundary)?;
    // RFC 2046: 1 to 70 characters.
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(MultipartError::NoBoundary);
    }
    Ok(boundary)
}

pub struct Multipart<S> {
    stream: S,
    /// `\r\n--boundary`: every delimiter, the first included (a CRLF is put in front of the
    /// body so the first needs no case of its own).
    delimiter: Vec<u8>,
    buf: BytesMut,
    /// Inside a part's data (its headers read, its closing delimiter not yet found).
    in_part: bool,
    finished: bool,
    eof: bool,
    /// Bytes read of the body so far, and the most it may have: what one upload can cost,
    /// parts read past (fields the upload does not use) included.
    read: u64,
    max: u64,
}

impl<S, E> Multipart<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    /// A reader of at most `max` bytes of body (beyond it: [`MultipartError::TooLarge`]).
    pub fn new(stream: S, boundary: &str, max: u64) -> Self {
        let mut buf = BytesMut::with_capacity(8 * 1024);
        buf.extend_from_slice(b"\r\n");
        Multipart {
            stream,
            delimiter: [b"\r\n--", boundary.as_bytes()].concat(),
            buf,
            in_part: false,
            finished: false,
            eof: false,
            read: 0,
            max,
        }
    }

    /// Reads more of the body into the buffer; false at its end.
    async fn fill(&mut self) -> Result<bool, MultipartError> {
        if self.eof {
            return Ok(false);
        }
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.read += chunk.len() as u64;
                if self.read > self.max {
                    return Err(MultipartError::TooLarge(self.max));
                }
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(MultipartError::Read(e.to_string())),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    fn find_delimiter(&self) -> Option<usize> {
        memchr::memmem::find(&self.buf, &self.delimiter)
    }

    /// The next part's headers, or `None` after the closing delimiter. Data left unread in
    /// the current part is skipped.
    pub async fn next_part(&mut self) -> Result<Option<Part>, MultipartError> {
        while self.in_part {
            if self.next_chunk().await?.is_none() {
                break;
            }
        }
        if self.finished {
            return Ok(None);
        }
        // The delimiter (the first one may follow a preamble, which is skipped).
        let at = loop {
            if let Some(at) = self.find_delimiter() {
                break at;
            }
            if self.buf.len() > MAX_HEAD + self.delimiter.len() {
                return Err(MultipartError::BadHeaders);
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        };
        self.buf.advance(at + self.delimiter.len());
        // `--` closes the body; otherwise optional whitespace, then CRLF and the headers.
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        }
        if self.buf.starts_with(b"--") {
            self.finished = true;
            return Ok(None);
        }
        let headers_end = loop {
            if let Some(end) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                if end > MAX_HEAD {
                    return Err(MultipartError::BadHeaders);
                }
                break end + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(MultipartError::BadHeaders);
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        };
        let head = self.buf.split_to(headers_end);
        let part = parse_part_headers(&head)?;
        self.in_part = true;
        Ok(Some(part))
    }

    /// The next piece of the current part's data; `None` at the part's end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        if !self.in_part {
            return Ok(None);
        }
        loop {
            if let Some(at) = self.find_delimiter() {
                self.in_part = false;
                return Ok((at > 0).then(|| self.buf.split_to(at).freeze()));
            }
            // What cannot be the start of a delimiter is data already.
            let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 {
                return Ok(Some(self.buf.split_to(safe).freeze()));
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated);
            }
        }
    }

    /// The current part's data whole, up to `limit` bytes (for small text fields).
    pub async fn text(&mut self, limit: usize) -> Result<Option<String>, MultipartError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if out.len() + chunk.len() > limit {
                return Ok(None);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8(out).ok())
    }
}

/// The part's `Content-Disposition: form-data; name="..."; filename="..."`. The head starts
/// with the rest of the delimiter line (transport padding, then CRLF).
fn parse_part_headers(head: &[u8]) -> Result<Part, MultipartError> {
    let line_end = memchr::memmem::find(head, b"\r\n").ok_or(MultipartError::BadHeaders)?;
    if !head[..line_end].iter().all(|b| *b == b' ' || *b == b'\t') {
        return Err(MultipartError::BadHeaders);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = httparse::parse_headers(&head[line_end + 2..], &mut headers)
        .map_err(|_| MultipartError::BadHeaders)?;
    let httparse::Status::Complete((_, headers)) = parsed else {
        return Err(MultipartError::BadHeaders);
    };
    let disposition = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-disposition"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .ok_or(MultipartError::NoName)?;
    let mut params = disposition.split(';').map(str::trim);
    if !params
        .next()
        .is_some_and(|kind| kind.eq_ignore_ascii_case("form-data"))
    {
        return Err(MultipartError::NoName);
    }
    let mut name = None;
    let mut filename = None;
    for param in split_params(disposition) {
        match param.0.to_ascii_lowercase().as_str() {
            "name" => name = Some(param.1),
            "filename" => filename = Some(param.1),
            _ => {}
        }
    }
    Ok(Part {
        name: name.ok_or(MultipartError::NoName)?,
        filename,
    })
}

/// `key=value` and `key="quoted; value"` parameters after the first `;`, quotes undone (a
/// backslash escapes the next character, as browsers and HTTP clients write them).
fn split_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    // Skip the disposition type.
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ';') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
            // Up to the next parameter.
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                val.push(c);
            }
        }
        out.push((key.trim().to_string(), val.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(boundary: &str) -> Vec<u8> {
        format!(
            "preamble to skip\r\n--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in; \\\"1\\\".jsonl\"\r\nContent-Type: application/jsonl\r\n\r\nline one\r\n--{short}\r\n--\r\nline two\r\n--{b}--\r\nepilogue",
            b = boundary,
            // A prefix of the boundary is data, not a delimiter.
            short = &boundary[..boundary.len() - 1]
        )
        .into_bytes()
    }

    async fn read_all(
        chunks: Vec<Bytes>,
        boundary: &str,
    ) -> Result<Vec<(Part, Vec<u8>)>, MultipartError> {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let mut reader = Multipart::new(stream, boundary, 1 << 20);
        let mut parts = Vec::new();
        while let Some(part) = reader.next_part().await? {
            let mut data = Vec::new();
            while let Some(chunk) = reader.next_chunk().await? {
                data.extend_from_slice(&chunk);
            }
            parts.push((part, data));
        }
        Ok(parts)
    }

    #[tokio::test]
    async fn parts_come_out_whole_however_the_body_is_cut() {
        let boundary = "XyZ-123";
        let whole = body(boundary);
        for size in [1, 2, 3, 7, 13, 64, whole.len()] {
            let chunks = whole.chunks(size).map(Bytes::copy_from_slice).collect();
            let parts = read_all(chunks, boundary).await.unwrap();
            assert_eq!(parts.len(), 2, "chunk size {size}");
            assert_eq!(parts[0].0.name, "purpose");
            assert_eq!(parts[0].0.filename, None);
            assert_eq!(parts[0].1, b"batch");
            assert_eq!(parts[1].0.name, "file");
            assert_eq!(parts[1].0.filename.as_deref(), Some("in; \"1\".jsonl"));
            assert_eq!(
                parts[1].1,
                format!(
                    "line one\r\n--{}\r\n--\r\nline two",
                    &boundary[..boundary.len() - 1]
                )
                .as_bytes()
            );
        }
    }

    #[tokio::test]
    async fn a_cut_or_malformed_body_is_an_error() {
        let boundary = "b";
        let whole = body(boundary);
        let cut = Bytes::copy_from_slice(&whole[..whole.len() - 20]);
        assert_eq!(
            read_all(vec![cut], boundary).await.unwrap_err(),
            MultipartError::Truncated
        );
        let no_name = Bytes::from_static(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--");
        assert_eq!(
            read_all(vec![no_name], "b").await.unwrap_err(),
            MultipartError::NoName
        );
        let huge_head = Bytes::from(format!("--b\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD)));
        assert_eq!(
            read_all(vec![huge_head], "b").await.unwrap_err(),
            MultipartError::BadHeaders
        );
        // A body past its bound, however it is spent (here on a field read past).
        let endless = format!(
            "--b\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n{}",
            "x".repeat(2 << 20)
        );
        assert_eq!(
            read_all(vec![Bytes::from(endless)], "b").await.unwrap_err(),
            MultipartError::TooLarge(1 << 20)
        );
        let no_delimiter = Bytes::from(vec![b'x'; MAX_HEAD * 2]);
        assert_eq!(
            read_all(vec![no_delimiter], "b").await.unwrap_err(),
            MultipartError::BadHeaders
        );
    }

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=xyz").unwrap(),
            "xyz"
        );
        assert!(boundary("application/json").is_err());
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary(&format!("multipart/form-data; boundary={}", "a".repeat(71))).is_err());
    }
}
