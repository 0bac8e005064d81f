//! TLS on the listener: the real binary with `--tls-cert`/`--tls-key` made from a test CA
//! generated here. A client that trusts the CA gets through; one that does not, cannot; a plain
//! HTTP client gets nothing; a key that is not a key stops the start naming the file.

use crate::cli::{bin, serve_with};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::Path;

/// A CA, and a certificate for 127.0.0.1 and localhost it signed: (ca pem, cert pem, key pem).
fn test_pki() -> (String, String, String) {
    test_pki_for(&["127.0.0.1", "localhost"])
}

/// A CA, and a certificate for `names` it signed: (ca pem, cert pem, key pem).
pub(crate) fn test_pki_for(names: &[&str]) -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

fn get(client: reqwest::Client, url: String) -> Result<u16, reqwest::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { client.get(url).send().await.map(|r| r.status().as_u16()) })
}

#[test]
fn a_client_that_trusts_the_ca_connects_and_one_that_does_not_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.d");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let (_server, addr, _) = serve_with(
        bin(),
        dir.path(),
        &shipped,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(addr.starts_with("https://"), "{addr}");
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(get(trusting, format!("{addr}/health/live")).unwrap(), 200);

    let (other_ca, _, _) = test_pki();
    let distrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(other_ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let refused = get(distrusting, format!("{addr}/health/live"));
    assert!(
        refused.is_err(),
        "a client that does not trust the CA got {refused:?}"
    );

    let plain = addr.replacen("https://", "http://", 1);
    let plain = get(reqwest::Client::new(), format!("{plain}/health/live"));
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|s| *s != 200),
        "{plain:?}"
    );
}

#[test]
fn a_key_that_is_not_a_key_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = test_pki();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key, sk-secret-looking").unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--providers")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.d"))
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key.pem"), "{stderr}");
    assert!(!stderr.contains("sk-secret-looking"), "{stderr}");
    // --tls-cert without --tls-key is a usage error.
    let out = bin()
        .args(["serve", "--tls-cert", "cert.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
