//! The `belfry` binary's own commands, run as a user would.

use std::process::Command;

use crate::support::spawn_app;

fn belfry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_belfry"))
}

fn write_config(dir: &std::path::Path, base_url_listen: &str) -> std::path::PathBuf {
    let file = dir.join("belfry.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"{base_url_listen}\"\n[auth]\napi_keys = [\"{}\"]\njwt_secret = \"{}\"\n",
            crate::support::API_KEY,
            crate::support::JWT_SECRET
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn token_mints_a_token_the_server_accepts_and_notify_calls_the_api() {
    let app = spawn_app().await;
    let listen = app.base.trim_start_matches("http://").to_owned();
    let config = write_config(app.dir.path(), &listen);

    let output = belfry()
        .args([
            "--config",
            config.to_str().unwrap(),
            "token",
            "--user",
            "42",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let response = app
        .client
        .get(format!("{}/v1/me/unread-count", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let output = tokio::task::spawn_blocking(move || {
        belfry()
            .args([
                "--config",
                config.to_str().unwrap(),
                "notify",
                "--user",
                "42",
            ])
            .args(["--type", "cli.test", "--data", r#"{"from":"cli"}"#])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let (_, page) = app.get_as("42", "/v1/me/notifications").await;
    assert_eq!(page["notifications"][0]["type"], "cli.test");
    assert_eq!(page["notifications"][0]["data"]["from"], "cli");
}

#[test]
fn notify_with_bad_json_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "127.0.0.1:9");
    let output = belfry()
        .args([
            "--config",
            config.to_str().unwrap(),
            "notify",
            "--user",
            "1",
            "--type",
            "t",
        ])
        .args(["--data", "{oops"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--data is not JSON"), "{stderr}");
}

#[test]
fn print_config_shows_effective_values_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "127.0.0.1:9999");
    let output = belfry()
        .args(["--config", config.to_str().unwrap(), "print-config"])
        .env("BELFRY_WS__OUTBOX_FRAMES", "77")
        // The backend client's variables, set in the same environment, are not settings.
        .env("BELFRY_URL", "http://127.0.0.1:9999")
        .env("BELFRY_API_KEY", "client-side")
        .env("BELFRY_JWT_SECRET", "client-side-secret")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(
        text.contains("outbox_frames = 77"),
        "env overrides the file: {text}"
    );
    assert!(!text.contains(crate::support::JWT_SECRET));
    assert!(!text.contains(crate::support::API_KEY));
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/belfry.db");
    let output = belfry()
        .args([
            "--database-url",
            &format!("sqlite://{}", db.display()),
            "migrate",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(db.exists());
}

#[test]
fn print_config_and_errors_show_no_password_inside_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("belfry.toml");
    std::fs::write(
        &file,
        "database_url = \"postgres://belfry:pw-db-1@db:5432/belfry?password=pw-query-2\"\n\
         [broker]\nkind = \"redis\"\nurl = \"redis://:pw-broker-3@cache:6379\"\n\
         [auth]\njwt_secret = \"s\"\njwks_url = \"https://u:pw-jwks-4@idp.example/jwks\"\n\
         [ingest.redis]\nurl = \"redis://u:pw-ingest-5@cache:6379\"\n\
         [ingest.nats]\nurl = \"nats://pw-token-6@nats:4222\"\n",
    )
    .unwrap();
    let output = belfry()
        .args(["--config", file.to_str().unwrap(), "print-config"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains("pw-"), "{text}");
    assert!(
        text.contains("database_url = \"postgres://belfry:***@db:5432/belfry?password=***\""),
        "{text}"
    );
    assert!(text.contains("nats://***@nats:4222"), "{text}");

    let output = belfry()
        .args([
            "--database-url",
            "mysql://root:pw-mysql-7@db/belfry",
            "migrate",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unsupported database_url"), "{stderr}");
    assert!(stderr.contains("mysql://root:***@db/belfry"), "{stderr}");
    assert!(!stderr.contains("pw-mysql"), "{stderr}");
}

#[test]
fn a_taken_port_is_reported_once_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = write_config(dir.path(), &addr.to_string());
    let output = belfry()
        .args(["--config", config.to_str().unwrap()])
        .args([
            "--database-url",
            &format!("sqlite://{}", dir.path().join("b.db").display()),
        ])
        .arg("serve")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = format!("{addr} is in use; pass --listen 127.0.0.1:PORT with a free PORT");
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.matches("in use").count(), 1, "said once: {stderr}");
}

#[test]
fn the_generated_development_secrets_folder_ignores_itself_in_git() {
    let dir = tempfile::tempdir().unwrap();
    let output = belfry()
        .args(["token", "--user", "42"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(dir.path().join("belfry-data/secrets.toml").exists());
    let ignore = std::fs::read_to_string(dir.path().join("belfry-data/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
}
