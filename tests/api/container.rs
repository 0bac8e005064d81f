//! The container files, checked without a container engine (the build machine has none): the
//! compose file parses and gives the gateway only flags and variables that exist; the
//! Dockerfile's start command, run outside a container with its folders mapped to temp ones,
//! serves, and its health check command says so (and says so no longer once it stops). The
//! Dockerfile's build command is the release build (`deploy/check-outside-docker.sh` runs it).

use crate::cli::bin;
use serde_yaml::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `switchboard <command> --help`: every flag and its variable.
fn help(command: &str) -> String {
    let out = bin().args([command, "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The variables the shipped provider files read (`${NAME}`).
fn provider_variables() -> String {
    std::fs::read_dir(root().join("providers.d"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

/// Whether the gateway's code reads variable `key` by name.
fn sources_read(key: &str) -> bool {
    fn walk(dir: &Path, needle: &str) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, needle)
            } else {
                path.extension().is_some_and(|x| x == "rs")
                    && std::fs::read_to_string(&path).unwrap().contains(needle)
            }
        })
    }
    walk(&root().join("src"), &format!("\"{key}\""))
}

#[test]
fn the_compose_file_parses_and_gives_only_flags_and_variables_that_exist() {
    let text = std::fs::read_to_string(root().join("compose.yaml")).unwrap();
    let mut compose: Value = serde_yaml::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    let serve_help = help("serve");
    let providers = provider_variables();
    let services = compose["services"].as_mapping().unwrap();
    let mut gateways = 0;
    for (name, service) in services {
        let Some(command) = service["command"].as_sequence() else {
            continue;
        };
        if service["build"].as_str() != Some(".") {
            continue;
        }
        gateways += 1;
        let args: Vec<&str> = command.iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(args[0], "serve", "{name:?}");
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                serve_help.contains(&format!("{flag} ")),
                "{name:?}: no flag {flag}"
            );
        }
        for (key, _) in service["environment"].as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            if key.starts_with("SWITCHBOARD_") {
                // A flag's variable (in --help), or one the gateway reads itself (the admin key).
                let read = serve_help.contains(key) || sources_read(key);
                assert!(read, "{name:?}: no variable {key}");
            } else {
                assert!(
                    providers.contains(&format!("${{{key}}}")),
                    "{name:?}: no provider reads {key}"
                );
            }
        }
        // The mounted folders are the ones the command names.
        for volume in service["volumes"].as_sequence().unwrap() {
            let target = volume.as_str().unwrap().split(':').nth(1).unwrap();
            assert!(
                args.contains(&target),
                "{name:?}: {target} is mounted but not used"
            );
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(root().join(source).is_dir(), "{source} does not exist");
        }
    }
    assert_eq!(gateways, 2, "two gateways behind the balancer");
    assert!(services.contains_key("redis") && services.contains_key("balancer"));
}

/// The JSON array after `prefix` on the Dockerfile line that starts with it.
fn exec_form(dockerfile: &str, prefix: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line"));
    let json = &line[line.find('[').unwrap()..];
    serde_json::from_str(json).unwrap()
}

/// The binary with `env` and no TLS or settings file from the shell that runs the tests.
fn with_env(env: &[(&str, &Path)]) -> std::process::Command {
    let mut command = bin();
    for name in [
        "SWITCHBOARD_TLS_CERT",
        "SWITCHBOARD_TLS_KEY",
        "SWITCHBOARD_CONFIG",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// The Dockerfile's start command, run outside a container with the image's folders mapped to
/// temp ones (what COPY puts there, copied there) and `env` added: the server, its address
/// (`127.0.0.1:PORT`, no scheme) and the folder it lives in.
fn start_image(
    dockerfile: &str,
    env: &[(&str, &Path)],
) -> (crate::cli::Running, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    for folder in ["providers.d", "policies"] {
        assert!(dockerfile.contains(&format!("COPY {folder} /etc/switchboard/{folder}")));
        copy_dir(&root().join(folder), &etc.join(folder));
    }
    let var = dir.path().join("var");
    std::fs::create_dir_all(&var).unwrap();
    let args: Vec<String> = exec_form(dockerfile, "CMD")
        .into_iter()
        .map(|a| {
            a.replace("/etc/switchboard", etc.to_str().unwrap())
                .replace("/var/lib/switchboard", var.to_str().unwrap())
                .replace("0.0.0.0:8080", "127.0.0.1:0")
        })
        .collect();
    let mut command = with_env(env);
    command
        .args(&args)
        .env("SWITCHBOARD_ADMIN_KEY", "sk-container");
    let (server, addr, _) = crate::cli::start(command);
    assert!(var.join("data").is_dir(), "state goes to the data volume");
    let addr = addr.split_once("://").unwrap().1.to_string();
    (server, addr, dir)
}

/// The Dockerfile's health check command against `addr` (for the image's 127.0.0.1:8080), with
/// `env` added: its exit code.
fn health_check(dockerfile: &str, addr: &str, env: &[(&str, &Path)]) -> Option<i32> {
    let health = exec_form(dockerfile, "HEALTHCHECK");
    assert_eq!(health[0], "switchboard");
    let args: Vec<String> = health[1..]
        .iter()
        .map(|a| a.replace("127.0.0.1:8080", addr))
        .collect();
    with_env(env).args(&args).output().unwrap().status.code()
}

#[test]
fn the_dockerfiles_start_and_health_commands_work_outside_a_container() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("RUN cargo build --release --locked"),
        "the image is built from the locked dependencies"
    );
    assert!(
        dockerfile.contains("USER switchboard"),
        "it runs as a non-root user"
    );
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, ["switchboard"]);

    let (server, addr, _dir) = start_image(&dockerfile, &[]);
    assert_eq!(
        health_check(&dockerfile, &addr, &[]),
        Some(0),
        "healthy while it serves"
    );
    drop(server);
    assert_ne!(
        health_check(&dockerfile, &addr, &[]),
        Some(0),
        "unhealthy once it has stopped"
    );
}

/// An image started with TLS on (`SWITCHBOARD_TLS_CERT`, `_KEY`, as an operator sets them) is
/// healthy to the same health check command, which sees the same variables: it asks over
/// HTTPS. The certificate names the public host only, not 127.0.0.1.
#[test]
fn the_dockerfiles_health_check_follows_the_gateway_onto_tls() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let pki = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = crate::tls::test_pki_for(&["gateway.example.test"]);
    let cert_path = pki.path().join("cert.pem");
    let key_path = pki.path().join("key.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let tls: [(&str, &Path); 2] = [
        ("SWITCHBOARD_TLS_CERT", &cert_path),
        ("SWITCHBOARD_TLS_KEY", &key_path),
    ];
    let (server, addr, _dir) = start_image(&dockerfile, &tls);
    assert_eq!(
        health_check(&dockerfile, &addr, &tls[..1]),
        Some(0),
        "healthy over HTTPS"
    );
    assert_ne!(
        health_check(&dockerfile, &addr, &[]),
        Some(0),
        "plain HTTP to a TLS listener is not an answer"
    );
    // TLS named in a settings file instead (`SWITCHBOARD_CONFIG`): the check reads it too.
    let settings = pki.path().join("switchboard.yaml");
    std::fs::write(
        &settings,
        format!(
            "tls_cert: {}\ntls_key: {}\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .unwrap();
    assert_eq!(
        health_check(&dockerfile, &addr, &[("SWITCHBOARD_CONFIG", &settings)]),
        Some(0),
        "healthy over HTTPS, TLS from the settings file"
    );
    drop(server);
    assert_ne!(
        health_check(&dockerfile, &addr, &tls[..1]),
        Some(0),
        "unhealthy once it has stopped"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
