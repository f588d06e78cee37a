//! The deployment files, checked with the tools that read them: `docker-compose config`
//! (Debian's docker-compose 1.29) parses the compose stack, `kubernetes-validate` (PyPI,
//! Kubernetes' JSON schemas shipped in the package, strict mode) validates `deploy/k8s`,
//! `systemd-analyze verify` reads the unit. Every environment name the compose file and the
//! ConfigMap set must be one the binary reads, and their values must load as a config.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use switchyard::config::reference::reads_env;
use switchyard::config::Config;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a tool, failing with an install hint when it is missing.
fn run(program: &str, args: &[&str], hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): {hint}"))
}

fn ok_or_explain(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every YAML document in `path`, as JSON (PyYAML from the test venv).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let python = common::test_python("yaml");
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let out = run(
        &python,
        &["-c", script, &path.display().to_string()],
        "bash scripts/services.sh",
    );
    ok_or_explain(&format!("parsing {}", path.display()), &out);
    serde_json::from_slice(&out.stdout).expect("YAML as JSON")
}

/// `docker-compose config`: the file as the tool understands it (interpolated, normalised).
fn compose_config() -> Value {
    let hint = "install it with `bash scripts/services.sh` (apt: docker-compose)";
    let out = run(
        "docker-compose",
        &["-f", "docker-compose.yml", "config"],
        hint,
    );
    ok_or_explain("docker-compose config", &out);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("compose.yml");
    std::fs::write(&path, &out.stdout).expect("write");
    yaml_documents(&path).remove(0)
}

/// A service's environment as name -> value (map or `NAME=value` list form).
fn environment(service: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Fails unless every name is one the binary reads and the values load as a configuration.
fn assert_env_is_read_and_loads(what: &str, env: &BTreeMap<String, String>) {
    let unknown: Vec<&String> = env.keys().filter(|name| !reads_env(name)).collect();
    assert!(
        unknown.is_empty(),
        "{what} sets env names Switchyard does not read: {unknown:?} \
         (see `switchyard config-reference`)"
    );
    if let Err(e) = Config::load(None, env.clone()) {
        panic!("{what}: its environment does not load: {e}");
    }
}

#[test]
fn compose_file_passes_docker_compose_config() {
    let out = run(
        "docker-compose",
        &["-f", "docker-compose.yml", "config", "-q"],
        "install it with `bash scripts/services.sh` (apt: docker-compose)",
    );
    ok_or_explain("docker-compose config -q", &out);
}

#[test]
fn compose_env_names_are_the_ones_the_code_reads() {
    let config = compose_config();
    let services = &config["services"];
    let switchyard = &services["switchyard"];
    let env = environment(switchyard);
    for needed in [
        "AUTHENTICATION_API_KEY",
        "RABBITMQ_URI",
        "SQS_ENABLED",
        "SWITCHYARD_SQS__ENDPOINT_URL",
        "KAFKA_BROKERS",
        "SWITCHYARD_SERVER__LISTEN",
    ] {
        assert!(
            env.contains_key(needed),
            "switchyard service lacks {needed}"
        );
    }
    assert_env_is_read_and_loads("docker-compose.yml's switchyard service", &env);

    // The wiring: brokers by service name, the consumer on Switchyard's exchange.
    assert!(env["RABBITMQ_URI"].contains("@rabbitmq:5672"), "{env:?}");
    assert!(env["SWITCHYARD_SQS__ENDPOINT_URL"].contains("elasticmq:9324"));
    assert_eq!(env["KAFKA_BROKERS"], "kafka:9092");
    let consumer = environment(&services["consumer"]);
    assert_eq!(consumer["EXCHANGE"], env["RABBITMQ_EXCHANGE_NAME"]);

    // Health checks and start order.
    for name in ["switchyard", "rabbitmq", "elasticmq", "kafka"] {
        assert!(
            services[name]["healthcheck"]["test"].is_array()
                || services[name]["healthcheck"]["test"].is_string(),
            "{name} has no health check"
        );
    }
    for dependency in ["rabbitmq", "elasticmq", "kafka"] {
        assert_eq!(
            switchyard["depends_on"][dependency]["condition"], "service_healthy",
            "switchyard must wait for {dependency}"
        );
    }
    assert_eq!(
        services["consumer"]["depends_on"]["switchyard"]["condition"],
        "service_healthy"
    );
    // Named volumes for every stateful service.
    let volumes = config["volumes"].as_object().expect("named volumes");
    for volume in [
        "switchyard-data",
        "rabbitmq-data",
        "elasticmq-data",
        "kafka-data",
    ] {
        assert!(volumes.contains_key(volume), "volume {volume}");
    }
    assert!(
        switchyard["volumes"].to_string().contains("/data"),
        "switchyard's data volume"
    );
    // Kafka runs KRaft: a controller role and no ZooKeeper.
    let kafka = environment(&services["kafka"]);
    assert!(kafka["KAFKA_PROCESS_ROLES"].contains("controller"));
    assert!(!services.as_object().unwrap().contains_key("zookeeper"));
}

fn k8s_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn k8s_manifests_validate_against_the_kubernetes_schemas() {
    let python = common::test_python("kubernetes_validate");
    let files = k8s_files();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec![
        "-m".to_string(),
        "kubernetes_validate".into(),
        "--strict".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&python, &args, "bash scripts/services.sh");
    ok_or_explain("kubernetes-validate --strict deploy/k8s/*.yaml", &out);
    let report = String::from_utf8_lossy(&out.stdout);
    for kind in ["statefulset", "deployment", "service", "configmap"] {
        assert!(report.contains(&format!("resource {kind}/")), "{report}");
    }
}

#[test]
fn k8s_workloads_probe_health_and_ready_and_read_known_env() {
    let docs: Vec<Value> = k8s_files().iter().flat_map(|f| yaml_documents(f)).collect();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in deploy/k8s"))
            .clone()
    };
    let configmap = of_kind("ConfigMap");
    let mut env: BTreeMap<String, String> = configmap["data"]
        .as_object()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let secret = of_kind("Secret");
    for (k, v) in secret["stringData"].as_object().expect("Secret stringData") {
        env.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
    assert_env_is_read_and_loads("deploy/k8s ConfigMap + Secret", &env);

    let statefulset = of_kind("StatefulSet");
    let deployment = of_kind("Deployment");
    for (workload, engine) in [(&statefulset, "embedded"), (&deployment, "kafka")] {
        let container = &workload["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(container["args"][0], "serve");
        let mut with_engine = env.clone();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_string();
            with_engine.insert(name, var["value"].as_str().unwrap_or_default().into());
        }
        assert_eq!(with_engine["SWITCHYARD_LOG__ENGINE"], engine);
        assert_env_is_read_and_loads(
            &format!("{} env", workload["kind"].as_str().unwrap_or_default()),
            &with_engine,
        );
        let mounts = container["volumeMounts"].to_string();
        assert!(mounts.contains("\"/data\""), "{mounts}");
        assert_eq!(
            workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
    }
    // The embedded log is single-writer: one replica with its own claim.
    assert_eq!(statefulset["spec"]["replicas"], 1);
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    assert!(deployment["spec"]["replicas"].as_u64().unwrap_or(0) > 1);
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_volume_and_healthcheck() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let with = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert!(with("FROM ") >= 2, "multi-stage");
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build")));
    let user = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("VOLUME") && l.contains("/data")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("CMD [\"switchyard\", \"health\"]")));
    assert!(with("HEALTHCHECK") == 1);
    assert!(lines.contains(&"ENTRYPOINT [\"switchyard\"]"));
    assert!(lines.contains(&"CMD [\"serve\"]"));
    // What the build copies exists, and .dockerignore lets it through.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for path in ["Cargo.toml", "Cargo.lock", "src", "benches"] {
        assert!(root().join(path).exists(), "{path}");
        assert!(
            ignore.contains(&format!("!{path}")),
            ".dockerignore drops {path}"
        );
    }
    // The image's health check is a real subcommand of this binary.
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["health", "--help"])
        .output()
        .expect("switchyard health --help");
    assert!(out.status.success());
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/switchyard.service"))
        .expect("deploy/systemd/switchyard.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/switchyard serve"));
    assert!(unit.contains("KillSignal=SIGTERM"));
    // Verify against this build's binary (the unit names the installed path).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchyard.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/switchyard",
            env!("CARGO_BIN_EXE_switchyard"),
        ),
    )
    .expect("write");
    let out = run(
        "systemd-analyze",
        &["verify", &path.display().to_string()],
        "apt: systemd",
    );
    ok_or_explain("systemd-analyze verify", &out);
    // verify exits 0 on unknown keys and bad values: it only warns, naming the file.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("switchyard.service"))
        .collect();
    assert!(warnings.is_empty(), "{}", warnings.join("\n"));
    // Every Environment= name in the unit is one the binary reads.
    for line in unit.lines() {
        if let Some(assignment) = line.strip_prefix("Environment=") {
            let name = assignment.split('=').next().unwrap_or_default();
            assert!(reads_env(name), "unit sets unknown {name}");
        }
    }
}

#[test]
fn health_subcommand_probes_the_configured_listen_address() {
    let server = common::TestServer::start(&[]);
    let health = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.arg("health").args(args).env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("switchyard health").status.success()
    };
    let url = server.url("/health");
    assert!(health(&["--url", &url], &[]));
    // No --url: /health on server.listen, an unspecified address probed on loopback (the
    // image's HEALTHCHECK relies on this with SWITCHYARD_SERVER__LISTEN=0.0.0.0:8080).
    let port = server.base.rsplit(':').next().expect("port");
    let listen = format!("0.0.0.0:{port}");
    assert!(health(&[], &[("SWITCHYARD_SERVER__LISTEN", &listen)]));
    drop(server);
    assert!(!health(&["--url", &url, "--timeout", "1"], &[]));
}
