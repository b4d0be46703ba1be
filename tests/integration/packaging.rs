//! The container image build and the example Kubernetes manifests, read as files.
//!
//! The image cannot be built here (no image registry is reachable) and the manifests are not
//! applied to a cluster, so these tests read what a reviewer would: the Dockerfile's final
//! stage runs the release binary as a non-root user on a slim base, and the manifests run N
//! `rangecopy worker` pods as an Indexed Job on the job that the starting `rangecopy copy`
//! names, with both URLs from one Secret. Their schema is checked by `scripts/test.sh`
//! (kubernetes-validate); the flags they pass are checked against the binary's own help.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::common::run;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------------

/// One instruction of a Dockerfile: its keyword (upper case) and the rest, continuation lines
/// joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    rest: String,
}

/// The instructions of a Dockerfile, comments and blank lines left out, grouped by stage (each
/// stage begins with its FROM).
fn dockerfile_stages(text: &str) -> Vec<Vec<Instruction>> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in lines.into_iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = Instruction { keyword: keyword.to_ascii_uppercase(), rest: rest.trim().to_string() };
        if instruction.keyword == "FROM" || stages.is_empty() {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("a stage").push(instruction);
    }
    stages
}

fn last<'a>(stage: &'a [Instruction], keyword: &str) -> Option<&'a Instruction> {
    stage.iter().rev().find(|i| i.keyword == keyword)
}

/// The value of `ARG NAME=VALUE` anywhere before the stages use it.
fn arg_default(stages: &[Vec<Instruction>], name: &str) -> Option<String> {
    stages.iter().flatten().filter(|i| i.keyword == "ARG").find_map(|i| {
        let (n, v) = i.rest.split_once('=')?;
        (n.trim() == name).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `${NAME}` replaced by the ARG defaults.
fn expand(stages: &[Vec<Instruction>], text: &str) -> String {
    let mut out = text.to_string();
    while let Some(start) = out.find("${") {
        let end = out[start..].find('}').map(|e| start + e).expect("a closing brace");
        let name = out[start + 2..end].to_string();
        let value = arg_default(stages, &name).unwrap_or_else(|| panic!("ARG {name} has no default"));
        out.replace_range(start..=end, &value);
    }
    out
}

/// What a Dockerfile must be for rangecopy's image; each broken rule is one line of the result.
fn dockerfile_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let stages = dockerfile_stages(text);
    if stages.len() < 2 {
        return vec![format!("expected a build stage and a final stage, found {} stage(s)", stages.len())];
    }
    // The build stage: the release binary, from the locked dependencies.
    let builds = stages[..stages.len() - 1].iter().flatten().any(|i| {
        i.keyword == "RUN"
            && i.rest.contains("cargo build")
            && i.rest.contains("--release")
            && i.rest.contains("--locked")
    });
    if !builds {
        problems.push("no build stage runs `cargo build --release --locked`".to_string());
    }
    let last_stage = stages.last().expect("a final stage");
    let from = expand(&stages, &last_stage[0].rest);
    let base = from.split_whitespace().next().unwrap_or_default();
    if !(base.starts_with("debian:") && base.ends_with("-slim")) {
        problems.push(format!("the final stage should start from a slim Debian image, not {base:?}"));
    }
    if last_stage.iter().any(|i| i.keyword == "RUN" && i.rest.contains("cargo")) {
        problems.push("the final stage builds: the toolchain would ship in the image".to_string());
    }
    let copies_binary = last_stage.iter().any(|i| {
        i.keyword == "COPY" && i.rest.starts_with("--from=") && i.rest.contains("rangecopy /usr/local/bin/rangecopy")
    });
    if !copies_binary {
        problems.push("the final stage should COPY --from the build stage the binary to /usr/local/bin".to_string());
    }
    let installs =
        last_stage.iter().filter(|i| i.keyword == "RUN").map(|i| i.rest.as_str()).collect::<Vec<_>>().join(" ");
    for package in ["ca-certificates", "postgresql-client-"] {
        if !installs.contains(package) {
            problems.push(format!("the final stage does not install {package}"));
        }
    }
    match last(last_stage, "USER") {
        None => problems.push("the final stage has no USER: it would run as root".to_string()),
        Some(user) => {
            let name = user.rest.split(':').next().unwrap_or_default();
            if name.is_empty() || name == "root" || name == "0" {
                problems.push(format!("the final stage runs as root (USER {})", user.rest));
            } else if name.parse::<u32>().is_err() {
                problems.push(format!("USER {name}: give a numeric id, so Kubernetes' runAsNonRoot can check it"));
            }
        }
    }
    match last(last_stage, "ENTRYPOINT") {
        Some(e) if e.rest.replace(' ', "") == r#"["rangecopy"]"# => {}
        other => problems.push(format!(
            "the entrypoint should be [\"rangecopy\"] (exec form), not {:?}",
            other.map(|e| e.rest.as_str())
        )),
    }
    problems
}

/// Every path the build stage copies from the context is let in by `.dockerignore`, and the
/// rest (target/, .git/) stays out.
fn dockerignore_problems(dockerfile: &str, ignore: &str) -> Vec<String> {
    let rules: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let mut problems = Vec::new();
    if !rules.iter().any(|r| matches!(*r, "*" | "target" | "target/" | "/target")) {
        problems.push(".dockerignore should keep target/ out of the build context".to_string());
    }
    if rules.first() == Some(&"*") {
        let sources = dockerfile_stages(dockerfile)
            .into_iter()
            .flatten()
            .filter(|i| i.keyword == "COPY" && !i.rest.starts_with("--from"))
            .flat_map(|i| {
                let words: Vec<String> = i.rest.split_whitespace().map(str::to_string).collect();
                words[..words.len().saturating_sub(1)].to_vec()
            })
            .collect::<Vec<_>>();
        for source in sources {
            let path = source.trim_end_matches('/');
            if !rules.iter().any(|r| r.strip_prefix('!').is_some_and(|p| p.trim_end_matches('/') == path)) {
                problems.push(format!(".dockerignore leaves out {path}, which the Dockerfile copies"));
            }
        }
    }
    problems
}

#[test]
fn the_dockerfile_builds_the_release_binary_and_runs_it_as_a_non_root_user_on_a_slim_base() {
    let dockerfile = read("Dockerfile");
    let problems = dockerfile_problems(&dockerfile);
    assert!(problems.is_empty(), "Dockerfile:\n  {}", problems.join("\n  "));
    let problems = dockerignore_problems(&dockerfile, &read(".dockerignore"));
    assert!(problems.is_empty(), ".dockerignore:\n  {}", problems.join("\n  "));
    // The checks can fail: each of these breaks one rule.
    for (from, to, word) in [
        ("USER 10001:10001", "USER root", "root"),
        ("USER 10001:10001", "", "no USER"),
        (r#"ENTRYPOINT ["rangecopy"]"#, "ENTRYPOINT rangecopy", "entrypoint"),
        ("FROM debian:${DEBIAN}-slim", "FROM debian:${DEBIAN}", "slim"),
        ("cargo build --release --locked", "cargo build --locked", "--release --locked"),
        ("ca-certificates postgresql-common", "postgresql-common", "ca-certificates"),
    ] {
        assert!(dockerfile.contains(from), "the Dockerfile no longer has {from:?}: update this test");
        let broken = dockerfile_problems(&dockerfile.replace(from, to));
        assert!(broken.iter().any(|p| p.contains(word)), "breaking {from:?} went unseen: {broken:?}");
    }
    let broken = dockerignore_problems(&dockerfile, &read(".dockerignore").replace("!src/", ""));
    assert!(broken.iter().any(|p| p.contains("src")), "a context without src/ went unseen: {broken:?}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------------------------

fn manifest(name: &str) -> Value {
    let path = format!("deploy/kubernetes/{name}");
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// `value` at a dotted path of keys (and list indexes), or Null.
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    path.split('.')
        .try_fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        })
        .unwrap_or(&NULL)
}

fn text<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path).as_str().unwrap_or_default()
}

/// The container's args (the image's entrypoint is `rangecopy`).
fn args(job: &Value) -> Vec<String> {
    let args = at(job, "spec.template.spec.containers.0.args").as_sequence().cloned().unwrap_or_default();
    args.iter().map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| format!("{a:?}"))).collect()
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// What a Job that runs one rangecopy `command` on one job must be, with its URLs from the
/// Secret `secret` (its keys `keys`); each broken rule is one line of the result.
fn job_problems(job: &Value, command: &str, secret: &str, keys: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if text(job, "apiVersion") != "batch/v1" || text(job, "kind") != "Job" {
        problems.push("not a batch/v1 Job".to_string());
    }
    let pod = at(job, "spec.template.spec");
    let containers = at(pod, "containers").as_sequence().map_or(0, Vec::len);
    if containers != 1 {
        problems.push(format!("expected one container, found {containers}"));
    }
    let container = at(pod, "containers.0");
    if !text(container, "image").starts_with("rangecopy") {
        problems.push(format!("image {:?} is not rangecopy's", text(container, "image")));
    }
    if !at(container, "command").is_null() {
        problems.push("the container overrides the image's entrypoint (rangecopy)".to_string());
    }
    let args = args(job);
    if args.first().map(String::as_str) != Some(command) {
        problems.push(format!("args should start with {command:?}: {args:?}"));
    }
    if flag(&args, "--job").is_none_or(str::is_empty) {
        problems.push(format!("args name no --job: {args:?}"));
    }
    for word in ["--source", "--target"] {
        if args.iter().any(|a| a.starts_with(word)) {
            problems.push(format!("{word} in args: the URL (and its password) belongs in the Secret"));
        }
    }
    for (var, key) in [("RANGECOPY_SOURCE", "source"), ("RANGECOPY_TARGET", "target")] {
        let env = at(container, "env").as_sequence().cloned().unwrap_or_default();
        let entry = env.iter().find(|e| text(e, "name") == var);
        let reference = entry.map(|e| at(e, "valueFrom.secretKeyRef"));
        match reference {
            None => problems.push(format!("no {var} in the container's env")),
            Some(r) if text(r, "name") != secret || text(r, "key") != key || !keys.contains(&key) => {
                problems.push(format!("{var} should come from secretKeyRef {secret}/{key}, not {r:?}"))
            }
            Some(_) => {}
        }
    }
    let non_root = at(pod, "securityContext.runAsNonRoot").as_bool() == Some(true)
        || at(container, "securityContext.runAsNonRoot").as_bool() == Some(true);
    if !non_root {
        problems.push("runAsNonRoot is not true".to_string());
    }
    let user = at(container, "securityContext.runAsUser").as_u64().or(at(pod, "securityContext.runAsUser").as_u64());
    if user.is_none_or(|u| u == 0) {
        problems.push(format!("runAsUser should be a non-root id, not {user:?}"));
    }
    if at(container, "securityContext.allowPrivilegeEscalation").as_bool() != Some(false) {
        problems.push("allowPrivilegeEscalation is not false".to_string());
    }
    for part in ["requests.cpu", "requests.memory", "limits.memory"] {
        if at(container, &format!("resources.{part}")).is_null() {
            problems.push(format!("no resources.{part}"));
        }
    }
    let restart = text(pod, "restartPolicy");
    if !matches!(restart, "Never" | "OnFailure") {
        problems.push(format!("restartPolicy {restart:?} is not allowed in a Job"));
    }
    problems
}

/// The Indexed Job of workers: N pods at once, each index retried on its own, bad input
/// (exit 2) failing the Job at once.
fn workers_problems(job: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = at(job, "spec");
    if text(spec, "completionMode") != "Indexed" {
        problems.push(format!("completionMode should be Indexed, not {:?}", at(spec, "completionMode")));
    }
    let (completions, parallelism) = (at(spec, "completions").as_u64(), at(spec, "parallelism").as_u64());
    if completions.is_none_or(|n| n < 2) || completions != parallelism {
        problems.push(format!("completions {completions:?} and parallelism {parallelism:?} should be one N ≥ 2"));
    }
    let retries = at(spec, "backoffLimitPerIndex").as_u64().or(at(spec, "backoffLimit").as_u64());
    if retries.is_none_or(|n| n == 0) {
        problems.push("a failed worker is never started again: its index would fail the Job".to_string());
    }
    let rules = at(spec, "podFailurePolicy.rules").as_sequence().cloned().unwrap_or_default();
    let fails_on_bad_input = rules.iter().any(|r| {
        text(r, "action") == "FailJob"
            && text(r, "onExitCodes.operator") == "In"
            && at(r, "onExitCodes.values").as_sequence().is_some_and(|v| v.iter().any(|c| c.as_u64() == Some(2)))
    });
    if !fails_on_bad_input {
        problems.push("exit 2 (bad input) should fail the Job at once (podFailurePolicy)".to_string());
    }
    problems
}

/// The flags of `args` that `rangecopy <args[0]> --help` does not list.
fn unknown_flags(args: &[String]) -> Result<Vec<String>, String> {
    let help = run(&[args[0].as_str(), "--help"]);
    if help.code != 0 {
        return Err(help.stderr);
    }
    let listed: Vec<&str> = help.stdout.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).collect();
    Ok(args.iter().filter(|a| a.starts_with("--") && !listed.contains(&a.as_str())).cloned().collect())
}

#[test]
fn the_kubernetes_example_runs_n_workers_as_an_indexed_job_on_the_copy_s_job_with_urls_from_a_secret() {
    let secret = manifest("secret.yaml");
    assert_eq!((text(&secret, "apiVersion"), text(&secret, "kind")), ("v1", "Secret"));
    let secret_name = text(&secret, "metadata.name");
    let keys: Vec<&str> =
        ["source", "target"].into_iter().filter(|k| !at(&secret, &format!("stringData.{k}")).is_null()).collect();
    assert_eq!(keys, ["source", "target"], "the Secret should hold both URLs");
    for key in &keys {
        let url = text(&secret, &format!("stringData.{key}"));
        assert!(url.starts_with("postgres://") || url.starts_with("mysql://"), "{key}: {url:?} is not a URL");
    }

    let start = manifest("copy-job.yaml");
    let problems = job_problems(&start, "copy", secret_name, &keys);
    assert!(problems.is_empty(), "copy-job.yaml:\n  {}", problems.join("\n  "));
    let workers = manifest("workers-job.yaml");
    let mut problems = job_problems(&workers, "worker", secret_name, &keys);
    problems.extend(workers_problems(&workers));
    assert!(problems.is_empty(), "workers-job.yaml:\n  {}", problems.join("\n  "));
    assert_eq!(flag(&args(&workers), "--job"), flag(&args(&start), "--job"), "the workers should join the copy's job");
    assert_eq!(
        text(&workers, "spec.template.spec.containers.0.image"),
        text(&start, "spec.template.spec.containers.0.image"),
        "both Jobs should run the same image"
    );

    // The flags the manifests pass exist in the binary.
    let unknown = unknown_flags(&args(&start)).expect("rangecopy copy --help");
    assert!(unknown.is_empty(), "copy-job.yaml passes flags `rangecopy copy` does not have: {unknown:?}");
    match unknown_flags(&args(&workers)) {
        Ok(unknown) => {
            assert!(unknown.is_empty(), "workers-job.yaml passes flags `rangecopy worker` does not have: {unknown:?}")
        }
        // Until `rangecopy worker` exists on this branch.
        Err(why) => eprintln!("!!! not checking the worker's flags: rangecopy worker --help failed: {why}"),
    }

    // The checks can fail: each of these breaks one rule.
    let broken = |job: &Value, path: &str, value: Value| {
        let mut job = job.clone();
        let mut place = &mut job;
        for key in path.split('.') {
            place = match key.parse::<usize>() {
                Ok(i) => &mut place[i],
                Err(_) => &mut place[key],
            };
        }
        *place = value;
        let mut problems = job_problems(&job, "worker", secret_name, &keys);
        problems.extend(workers_problems(&job));
        problems
    };
    let pod = "spec.template.spec";
    for (path, value, word) in [
        ("spec.completionMode", Value::from("NonIndexed"), "Indexed"),
        ("spec.parallelism", Value::from(1), "parallelism"),
        (&format!("{pod}.containers.0.args.0") as &str, Value::from("copy"), "args should start"),
        (&format!("{pod}.containers.0.env.0.valueFrom.secretKeyRef.name"), Value::from("other"), "RANGECOPY_SOURCE"),
        (&format!("{pod}.containers.0.env.1.valueFrom"), Value::from("postgres://u:p@h/db"), "RANGECOPY_TARGET"),
        (&format!("{pod}.securityContext.runAsNonRoot"), Value::from(false), "runAsNonRoot"),
        (&format!("{pod}.securityContext.runAsUser"), Value::from(0), "runAsUser"),
        (&format!("{pod}.containers.0.resources"), Value::Null, "resources"),
    ] {
        let problems = broken(&workers, path, value);
        assert!(problems.iter().any(|p| p.contains(word)), "breaking {path} went unseen: {problems:?}");
    }
    let mut no_job = workers.clone();
    no_job["spec"]["template"]["spec"]["containers"][0]["args"] = Value::from(vec!["worker", "--workers", "2"]);
    assert!(job_problems(&no_job, "worker", secret_name, &keys).iter().any(|p| p.contains("--job")));
}
