//! The deployment files that cannot run here: the Dockerfile, the compose
//! file, the Kubernetes manifests, the systemd unit and the example
//! configuration (no Docker daemon, registry, cluster or systemd in the test
//! environment). Each file is parsed and every name it gives herald is held
//! against the binary: flags and `HERALD_*` variables that `herald --help`
//! lists, ports that are herald's listeners, HTTP probe paths that a running
//! herald answers `200` on the listener probed, timeouts that leave room for
//! the drain. Also here: deploy/redis/two-instances.sh, which does run (it
//! needs redis-server).
//!
//! Left out: building and running the image, and the third-party parts of
//! these files (the redis and nginx images, the ingress controller's
//! annotations) beyond the paths and names that point at herald.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use herald_testkit::{Binary, client, free_port};
use yaml_rust2::{Yaml, YamlLoader};

const DOCKERFILE: &str = include_str!("../Dockerfile");
const COMPOSE: &str = include_str!("../deploy/compose/compose.yaml");
const DEPLOYMENT: &str = include_str!("../deploy/kubernetes/deployment.yaml");
const SERVICE: &str = include_str!("../deploy/kubernetes/service.yaml");
const INGRESS: &str = include_str!("../deploy/kubernetes/ingress.yaml");
const UNIT: &str = include_str!("../deploy/systemd/herald.service");
const EXAMPLE_CONFIG: &str = include_str!("../deploy/herald.toml");

/// herald's public routes, by their first path segment.
const PUBLIC_ROUTES: [&str; 5] = ["/poll", "/longpoll", "/sse", "/ws", "/healthz"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What `herald --help` offers.
struct Options {
    help: String,
}

impl Options {
    fn read() -> Options {
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        Options {
            help: String::from_utf8(out.stdout).unwrap(),
        }
    }

    /// Fails unless every `--flag` (or `--flag=value`) among `args` is one
    /// of herald's.
    fn check_flags<'a>(&self, what: &str, args: impl IntoIterator<Item = &'a str>) {
        for arg in args {
            if let Some(flag) = arg.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap();
                assert!(
                    self.help.contains(&format!("--{flag} ")),
                    "{what}: herald has no flag --{flag}"
                );
            }
        }
    }

    /// Fails unless `name` is a variable herald reads.
    fn check_env(&self, what: &str, name: &str) {
        assert!(
            name.starts_with("HERALD_"),
            "{what}: {name} is not herald's"
        );
        // A secret's variable is listed without its value.
        assert!(
            self.help.contains(&format!("[env: {name}="))
                || self.help.contains(&format!("[env: {name}]")),
            "{what}: herald reads no {name}"
        );
    }

    /// Fails unless `key` of a configuration file is a long flag name.
    fn check_key(&self, what: &str, key: &str) {
        self.check_flags(what, [format!("--{key}").as_str()]);
    }

    /// The default of `--flag`, as `--help` shows it.
    fn default_of(&self, flag: &str) -> String {
        let at = self
            .help
            .find(&format!("--{flag} "))
            .unwrap_or_else(|| panic!("--{flag} in --help"));
        let rest = &self.help[at..];
        let start = rest.find("[default: ").unwrap() + "[default: ".len();
        rest[start..].split(']').next().unwrap().to_string()
    }

    fn default_secs(&self, flag: &str) -> u64 {
        self.default_of(flag).parse().unwrap()
    }
}

/// The port of an address such as `0.0.0.0:8080`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// herald's two listeners and their ports inside a container.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Listener {
    Public,
    Internal,
}

/// Container ports of the listeners, as the image sets them.
struct Ports {
    public: u16,
    internal: u16,
}

impl Ports {
    fn listener(&self, port: u16) -> Option<Listener> {
        match port {
            p if p == self.public => Some(Listener::Public),
            p if p == self.internal => Some(Listener::Internal),
            _ => None,
        }
    }
}

/// Answers whether a running herald answers `GET path` with 200 on
/// `listener`.
async fn answers(herald: &Binary, listener: Listener, path: &str) -> bool {
    let url = match listener {
        Listener::Public => herald.url(path),
        Listener::Internal => herald.internal_url(path),
    };
    client()
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

// ---------------------------------------------------------------------------
// Dockerfile

/// The Dockerfile's instructions (continuations joined, comments left
/// out), as (INSTRUCTION, rest).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((word.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The image's instructions of the final stage.
fn runtime_stage() -> Vec<(String, String)> {
    let all = instructions(DOCKERFILE);
    let last = all.iter().rposition(|(i, _)| i == "FROM").unwrap();
    all[last..].to_vec()
}

/// The `HERALD_*` variables the image sets.
fn image_env() -> BTreeMap<String, String> {
    runtime_stage()
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .map(|kv| kv.split_once('=').expect("ENV K=V"))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The listeners' ports in the image.
fn image_ports() -> Ports {
    let env = image_env();
    Ports {
        public: port_of(&env["HERALD_PUBLIC_ADDR"]),
        internal: port_of(&env["HERALD_INTERNAL_ADDR"]),
    }
}

/// The JSON array form of an instruction, as words.
fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|_| panic!("not a JSON array: {rest}"))
}

#[tokio::test]
async fn the_dockerfile_names_only_what_herald_has() {
    let options = Options::read();
    let all = instructions(DOCKERFILE);
    let froms: Vec<_> = all.iter().filter(|(i, _)| i == "FROM").collect();
    assert!(froms.len() >= 2, "a multi-stage build");
    let stage = runtime_stage();
    let get = |name: &str| -> Vec<&String> {
        stage
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r)
            .collect()
    };
    assert!(
        !get("FROM")[0].contains("rust"),
        "the runtime image is not the toolchain's"
    );
    let user = get("USER");
    assert_eq!(user.len(), 1, "one USER in the runtime stage");
    assert!(
        !["root", "0"].contains(&user[0].as_str()),
        "runs as non-root"
    );

    for name in image_env().keys() {
        options.check_env("Dockerfile ENV", name);
    }
    let ports = image_ports();
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|r| r.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from([ports.public, ports.internal]),
        "EXPOSE names the listeners"
    );

    // The entry point is the binary the build copied in, with real flags.
    let entry = exec_form(get("ENTRYPOINT")[0]);
    let copied = get("COPY")
        .iter()
        .find(|r| r.starts_with("--from="))
        .expect("the binary copied from the build stage")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    assert_eq!(entry[0], copied);
    options.check_flags("ENTRYPOINT", entry.iter().map(String::as_str));
    for cmd in get("CMD") {
        options.check_flags("CMD", exec_form(cmd).iter().map(String::as_str));
    }
    assert_eq!(get("STOPSIGNAL"), [&"SIGTERM".to_string()]);

    // The health check asks a path herald answers, on one of its ports.
    let check = get("HEALTHCHECK")[0];
    let url = check
        .split(['"', ' '])
        .find(|w| w.starts_with("http://"))
        .expect("a URL in HEALTHCHECK");
    let (host_port, path) = url["http://".len()..].split_once('/').unwrap();
    let listener = ports
        .listener(port_of(host_port))
        .unwrap_or_else(|| panic!("HEALTHCHECK port of {url} is no listener"));
    let herald = Binary::start(&[]);
    assert!(
        answers(&herald, listener, &format!("/{path}")).await,
        "HEALTHCHECK {url}: herald does not answer 200 there"
    );
}

#[test]
fn the_dockerignore_keeps_the_build_context_to_the_sources() {
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for needed in ["target/", ".git/"] {
        assert!(ignore.lines().any(|l| l == needed), "{needed} ignored");
    }
    for kept in ["Cargo.toml", "Cargo.lock", "crates", "src"] {
        assert!(!ignore.lines().any(|l| l.trim_end_matches('/') == kept));
    }
}

// ---------------------------------------------------------------------------
// compose

fn yaml(text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).expect("valid YAML")
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The keys of a mapping.
fn keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| h.keys().map(str_of).collect())
        .unwrap_or_default()
}

/// Seconds of a compose duration such as `15s`.
fn seconds(duration: &str) -> u64 {
    duration.strip_suffix('s').unwrap().parse().unwrap()
}

#[test]
fn the_compose_file_names_only_what_herald_has() {
    let options = Options::read();
    let ports = image_ports();
    let dir = root().join("deploy/compose");
    let doc = &yaml(COMPOSE)[0];
    let services = &doc["services"];
    let names = keys(services);
    let is_herald = |s: &Yaml| s["build"]["context"].as_str().is_some();
    let heralds: Vec<&String> = names
        .iter()
        .filter(|n| is_herald(&services[n.as_str()]))
        .collect();
    assert_eq!(heralds.len(), 2, "two instances: {names:?}");
    for name in &heralds {
        let service = &services[name.as_str()];
        let what = format!("compose service {name}");
        let context = dir.join(service["build"]["context"].as_str().unwrap());
        assert!(
            context.join("Dockerfile").is_file(),
            "{what}: build context"
        );
        let env = &service["environment"];
        for key in keys(env) {
            options.check_env(&what, &key);
        }
        assert_eq!(env["HERALD_ENGINE"].as_str(), Some("redis"), "{what}");
        let redis_host = env["HERALD_REDIS_URL"].as_str().unwrap();
        assert!(
            names
                .iter()
                .any(|n| redis_host.starts_with(&format!("redis://{n}:"))),
            "{what}: {redis_host} is no service"
        );
        if let Some(command) = service["command"].as_vec() {
            options.check_flags(&what, command.iter().filter_map(Yaml::as_str));
        }
        for mapping in service["ports"].as_vec().unwrap() {
            let container = port_of(mapping.as_str().unwrap());
            assert!(
                ports.listener(container).is_some(),
                "{what}: port {container}"
            );
        }
        let drain = env["HERALD_DRAIN_TIMEOUT"].as_str().map_or_else(
            || options.default_secs("drain-timeout"),
            |d| d.parse().unwrap(),
        );
        let grace = seconds(service["stop_grace_period"].as_str().unwrap());
        assert!(
            grace > drain,
            "{what}: stop_grace_period {grace}s <= drain {drain}s"
        );
    }

    // Every service waited on as healthy has a health check (herald's is
    // the image's HEALTHCHECK).
    for name in &names {
        for (dep, how) in services[name.as_str()]["depends_on"]
            .as_hash()
            .into_iter()
            .flatten()
        {
            let dep = str_of(dep);
            if how["condition"].as_str() == Some("service_healthy") {
                let target = &services[dep.as_str()];
                assert!(
                    is_herald(target) || !target["healthcheck"].is_badvalue(),
                    "{name} waits for {dep} to be healthy, which has no health check"
                );
            }
        }
    }

    // The proxy's mounted files exist, and its upstreams are the instances'
    // public ports.
    let nginx = &services["nginx"];
    for volume in nginx["volumes"].as_vec().unwrap() {
        let source = volume.as_str().unwrap().split(':').next().unwrap();
        let file = dir.join(source);
        assert!(file.is_file(), "nginx mounts {source}, which is missing");
        let conf = std::fs::read_to_string(file).unwrap();
        let upstreams: Vec<String> = conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .filter_map(|s| s.strip_suffix(';'))
            .map(str::to_string)
            .collect();
        let want: Vec<String> = heralds
            .iter()
            .map(|h| format!("{h}:{}", ports.public))
            .collect();
        assert_eq!(upstreams, want, "{source}: upstream servers");
    }
}

// ---------------------------------------------------------------------------
// Kubernetes

/// The one document of `kind` named `name` among `docs`.
fn find<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[tokio::test]
async fn the_kubernetes_manifests_name_only_what_herald_has() {
    let options = Options::read();
    let docs: Vec<Yaml> = [DEPLOYMENT, SERVICE, INGRESS]
        .iter()
        .flat_map(|t| yaml(t))
        .collect();
    let deployment = find(&docs, "Deployment", "herald");
    let pod = &deployment["spec"]["template"]["spec"];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = &pod["containers"][0];

    // Options.
    let args: Vec<&str> = container["args"]
        .as_vec()
        .map(|a| a.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default();
    options.check_flags("Deployment args", args.iter().copied());
    let mut env = BTreeMap::new();
    for var in container["env"].as_vec().unwrap() {
        let name = var["name"].as_str().unwrap();
        options.check_env("Deployment env", name);
        if let Some(value) = var["value"].as_str() {
            env.insert(name, value);
        }
    }
    let image = image_ports();
    let ports = Ports {
        public: env
            .get("HERALD_PUBLIC_ADDR")
            .map_or(image.public, |a| port_of(a)),
        internal: env
            .get("HERALD_INTERNAL_ADDR")
            .map_or(image.internal, |a| port_of(a)),
    };

    // Ports, by name.
    let mut named = BTreeMap::new();
    for port in container["ports"].as_vec().unwrap() {
        let number = port["containerPort"].as_i64().unwrap() as u16;
        let listener = ports
            .listener(number)
            .unwrap_or_else(|| panic!("containerPort {number} is no listener"));
        named.insert(port["name"].as_str().unwrap().to_string(), listener);
    }
    let listener_of = |port: &Yaml| -> Listener {
        match port {
            Yaml::String(name) => named[name.as_str()],
            Yaml::Integer(n) => ports.listener(*n as u16).expect("a listener port"),
            other => panic!("port {other:?}"),
        }
    };

    // Probes ask what herald answers.
    let herald = Binary::start(&[]);
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let p = &container[probe];
        if !p["httpGet"].is_badvalue() {
            let path = p["httpGet"]["path"].as_str().unwrap();
            let listener = listener_of(&p["httpGet"]["port"]);
            assert!(
                answers(&herald, listener, path).await,
                "{probe}: herald does not answer 200 on {path} ({listener:?})"
            );
        } else if !p["tcpSocket"].is_badvalue() {
            listener_of(&p["tcpSocket"]["port"]);
        }
    }
    assert!(
        !container["readinessProbe"].is_badvalue(),
        "a readiness probe"
    );
    assert!(
        !container["livenessProbe"].is_badvalue(),
        "a liveness probe"
    );

    // The drain fits in the grace period.
    let pre_stop: Vec<&str> = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_vec()
        .expect("a preStop drain")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(pre_stop[0], "sleep");
    let pause: u64 = pre_stop[1].parse().unwrap();
    let drain = args
        .iter()
        .position(|a| *a == "--drain-timeout")
        .map_or_else(
            || options.default_secs("drain-timeout"),
            |i| args[i + 1].parse().unwrap(),
        );
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        grace > pause + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {pause} + drain {drain}"
    );
    // The image's user.
    let user = runtime_stage()
        .into_iter()
        .find(|(i, _)| i == "USER")
        .unwrap()
        .1;
    assert_eq!(
        pod["securityContext"]["runAsUser"]
            .as_i64()
            .unwrap()
            .to_string(),
        user
    );

    // Services select the pods and target named container ports.
    let mut service_ports = BTreeMap::new();
    for service in docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Service"))
    {
        let name = service["metadata"]["name"].as_str().unwrap();
        assert_eq!(&service["spec"]["selector"], labels, "Service {name}");
        for port in service["spec"]["ports"].as_vec().unwrap() {
            let listener = listener_of(&port["targetPort"]);
            service_ports.insert((name, port["name"].as_str().unwrap()), listener);
        }
    }

    // The Ingress sends herald's public paths to the public listener only.
    let ingress = find(&docs, "Ingress", "herald");
    for rule in ingress["spec"]["rules"].as_vec().unwrap() {
        for path in rule["http"]["paths"].as_vec().unwrap() {
            let p = path["path"].as_str().unwrap();
            assert!(
                PUBLIC_ROUTES.contains(&p),
                "Ingress path {p} is no public route"
            );
            let backend = &path["backend"]["service"];
            let key = (
                backend["name"].as_str().unwrap(),
                backend["port"]["name"].as_str().unwrap(),
            );
            assert_eq!(
                service_ports.get(&key),
                Some(&Listener::Public),
                "Ingress {p} -> {key:?}"
            );
        }
    }
    let annotations = &ingress["metadata"]["annotations"];
    let read = annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]
        .as_str()
        .unwrap();
    assert!(read.parse::<u64>().unwrap() > options.default_secs("longpoll-max-timeout"));
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-buffering"].as_str(),
        Some("off")
    );
}

// ---------------------------------------------------------------------------
// systemd and the example configuration

#[test]
fn the_systemd_unit_and_the_example_configuration_name_only_what_herald_has() {
    let options = Options::read();
    let setting = |key: &str| -> Vec<&str> {
        UNIT.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .collect()
    };
    let exec = setting("ExecStart");
    assert_eq!(exec.len(), 1);
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert!(words[0].ends_with("/herald"), "{}", words[0]);
    options.check_flags("ExecStart", words[1..].iter().copied());
    for env in setting("Environment") {
        let name = env.trim_matches('"').split('=').next().unwrap();
        options.check_env("Environment", name);
    }
    let stop: u64 = seconds(&format!("{}s", setting("TimeoutStopSec")[0]));
    assert!(
        stop > options.default_secs("drain-timeout"),
        "TimeoutStopSec above the drain"
    );
    assert_eq!(setting("KillSignal"), ["SIGTERM"]);

    let config: toml::Table = toml::from_str(EXAMPLE_CONFIG).unwrap();
    for key in config.keys() {
        options.check_key("deploy/herald.toml", key);
    }
}

// ---------------------------------------------------------------------------
// deploy/redis/two-instances.sh

/// The script with free ports and the test's own binary.
fn two_instances(ports: [u16; 5]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("deploy/redis/two-instances.sh"))
        .arg("--check")
        .env("HERALD", env!("CARGO_BIN_EXE_herald"));
    for (name, port) in [
        "REDIS_PORT",
        "A_PUBLIC",
        "A_INTERNAL",
        "B_PUBLIC",
        "B_INTERNAL",
    ]
    .iter()
    .zip(ports)
    {
        cmd.env(name, port.to_string());
    }
    cmd
}

#[test]
fn the_two_instances_script_publishes_on_one_polls_on_the_other_and_refuses_busy_ports() {
    if herald_testkit::need("redis-server").is_none() || herald_testkit::need("curl").is_none() {
        return;
    }
    let ports = [(); 5].map(|_| free_port());
    let out = two_instances(ports).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""data":"hello from A""#), "{stdout}");

    // Something else on A's public port: the script must not take its
    // answers for herald's.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", ports[1])).unwrap();
    let out = two_instances(ports).output().unwrap();
    drop(squatter);
    assert!(!out.status.success(), "started although a port was taken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {} is already in use", ports[1])),
        "{stderr}"
    );
}
