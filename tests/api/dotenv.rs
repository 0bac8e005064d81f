//! `.env` in the working directory: read into the environment at start, variables already set
//! winning; a file that does not parse stops the process naming the line, never its values.

use crate::cli::{bin, get, serve_with};

#[test]
fn a_dotenv_file_sets_variables_the_environment_has_not_set() {
    let dir = tempfile::tempdir().unwrap();
    // A provider that is skipped until its key variable is set (never called here).
    let providers = dir.path().join("providers.d");
    std::fs::create_dir_all(&providers).unwrap();
    std::fs::write(
        providers.join("local.yaml"),
        "kind: openai\nbase_url: http://127.0.0.1:9/v1\napi_key: ${SB_DOTENV_TEST_KEY}\nmodels: [m]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# keys kept out of the shell\nSWITCHBOARD_ADMIN_KEY=sk-from-dotenv\nSB_DOTENV_TEST_KEY=\"sk-provider\"\n",
    )
    .unwrap();
    let mut cmd = bin();
    cmd.current_dir(dir.path()).env_remove("SB_DOTENV_TEST_KEY");
    let (_server, addr, _) = serve_with(cmd, dir.path(), &providers, &[]);
    let models = get(&format!("{addr}/v1/models"), "sk-from-dotenv");
    assert!(
        models.contains("local/m"),
        "the provider's key came from .env: {models}"
    );

    // A variable already in the environment wins over the file.
    let mut cmd = bin();
    cmd.current_dir(dir.path())
        .env("SWITCHBOARD_ADMIN_KEY", "sk-from-environment");
    let (_server, addr, _) = serve_with(cmd, &dir.path().join("second"), &providers, &[]);
    let denied = get(&format!("{addr}/v1/models"), "sk-from-dotenv");
    assert!(denied.contains("invalid_api_key"), "{denied}");
    let allowed = get(&format!("{addr}/v1/models"), "sk-from-environment");
    assert!(allowed.contains("local/m"), "{allowed}");
}

#[test]
fn a_dotenv_file_that_does_not_parse_stops_the_process_without_showing_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "GOOD=1\nOPENAI_API_KEY=\"sk-secret-value\nBROKEN LINE sk-other-secret\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["check", "--providers", "providers.d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(".env: line"), "{stderr}");
    assert!(
        !stderr.contains("sk-secret-value") && !stderr.contains("sk-other-secret"),
        "{stderr}"
    );
}
