//! Showing a URL without the user and password it may carry (`https://user:pass@host/...`),
//! for logs, `Debug` and admin responses: the one place this is done.

/// `text` with a URL's credentials left out; `None` when it is not a URL with credentials.
pub fn without_credentials(text: &str) -> Option<String> {
    let mut url = url::Url::parse(text).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_are_left_out_and_plain_text_is_not_a_url() {
        assert_eq!(
            without_credentials("https://me:s3cret@otlp.example.com/v1/traces").as_deref(),
            Some("https://otlp.example.com/v1/traces")
        );
        assert_eq!(without_credentials("https://otlp.example.com"), None);
        assert_eq!(without_credentials("127.0.0.1:8080"), None);
    }
}
