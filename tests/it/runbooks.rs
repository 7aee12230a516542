//! The runbooks in `runbooks/` cannot rot: every `landfall` command in them must parse with
//! the real command line, and every event name, error code and exit code they mention must
//! be one Landfall has; every page says how severe its situation is and runs its commands
//! from where on-call stands (in the cluster through `landfall-pod`, logs from Airflow, the
//! landing store through `lake-*` for S3, GCS and Azure alike). The conventions are written
//! down in `runbooks/README.md`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use clap::error::ErrorKind;
use landfall::cli::Cli;
use landfall::error::ErrorCode;
use regex::Regex;

/// Placeholders that may appear in `landfall` commands, with the sample value the check
/// substitutes. Keep in step with the table in `runbooks/README.md`.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("CONFIG", "config.yaml"),
    ("STREAM", "orders"),
    ("CURSOR", "2024-01-01T00:00:00Z"),
    ("START", "2024-01-01T00:00:00Z"),
    ("END", "2024-02-01T00:00:00Z"),
    ("RUN_ID", "01890a5d-ac96-774b-bcce-b302099a8057"),
    ("DURATION", "50m"),
    ("FILE", "summary.json"),
    ("DIR", "out"),
    ("CONNECTOR", "shop_api"),
];

/// Placeholders for things outside `landfall` commands (paths, kubectl arguments).
const TEXT_PLACEHOLDERS: &[&str] = &[
    "LANDING",
    "SOURCE",
    "DATE",
    "POD",
    "NAMESPACE",
    "DAG_RUN_ID",
    "TASK_ID",
    "JOB",
];

/// The in-cluster wrapper of `runbooks/README.md`: `landfall-pod <CONNECTOR> [NAME=value ...]
/// ARGS` runs `landfall ARGS` in a pod with the connector's ServiceAccount, ConfigMap, Secret
/// and the landfall labels.
const POD_WRAPPER: &str = "landfall-pod";

/// Storage CLIs that pages must not call directly: `lake-ls`, `lake-cat` and `lake-rm` cover
/// S3, GCS and Azure alike.
const STORE_SPECIFIC: &[&str] = &["aws s3 ", "gsutil ", "gcloud storage ", "az storage ", "azcopy "];

/// The parts every page has, in this order.
const SECTIONS: &[&str] = &["## Symptoms", "## Diagnosis", "## Fix", "## Verify", "## Escalation"];

/// Exit codes Landfall uses, and the kernel's for SIGKILL and SIGTERM.
const EXIT_CODES: &[u32] = &[0, 1, 2, 3, 4, 75, 137, 143];

fn runbooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks")
}

/// What the checks compare against: the names the code defines.
struct Catalogue {
    events: BTreeSet<String>,
    codes: BTreeSet<String>,
}

impl Catalogue {
    fn from_code() -> Self {
        Self {
            events: landfall::observe::events::ALL
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            codes: ErrorCode::ALL.iter().map(|code| code.as_str().to_owned()).collect(),
        }
    }
}

/// A text block of a page: a fenced code block, or a paragraph of prose (its lines joined,
/// so inline code may span lines), with the line it starts on.
struct Block {
    line: usize,
    fenced: bool,
    text: String,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    let mut in_fence = false;
    for (index, line) in page.lines().enumerate() {
        let number = index + 1;
        if line.trim_start().starts_with("```") {
            if let Some(block) = current.take() {
                blocks.push(block);
            }
            if in_fence {
                in_fence = false;
            } else {
                in_fence = true;
                current = Some(Block {
                    line: number + 1,
                    fenced: true,
                    text: String::new(),
                });
            }
            continue;
        }
        if in_fence {
            let block = current.get_or_insert_with(|| Block {
                line: number,
                fenced: true,
                text: String::new(),
            });
            block.text.push_str(line);
            block.text.push('\n');
        } else if line.trim().is_empty() {
            if let Some(block) = current.take() {
                blocks.push(block);
            }
        } else {
            let block = current.get_or_insert_with(|| Block {
                line: number,
                fenced: false,
                text: String::new(),
            });
            block.text.push_str(line.trim());
            block.text.push(' ');
        }
    }
    blocks.extend(current);
    blocks
}

/// Splits a command line into words the way a shell would for these simple cases (quotes,
/// no expansion), stopping at a pipe, a redirection, a list operator or a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                    word.push(inner);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '|' | ';' | '>' | '#' | '&' if !in_word => break,
            '>' | '&' | '|' if word.chars().all(|d| d.is_ascii_digit()) => {
                // `2>&1`, `2>/dev/null`: a redirection starting inside a word of digits.
                word.clear();
                in_word = false;
                break;
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `landfall` invocations of a code block: lines (joined at a trailing `\`) that start
/// with `landfall` after an optional `$ ` prompt and `NAME=value` assignments.
fn commands_in_code(text: &str) -> Vec<(usize, String)> {
    let mut commands = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (offset, line) in text.lines().enumerate() {
        let (start, mut joined) = match pending.take() {
            Some((start, so_far)) => (start, so_far),
            None => (offset, String::new()),
        };
        let trimmed = line.trim();
        if let Some(continued) = trimmed.strip_suffix('\\') {
            joined.push_str(continued);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(trimmed);
        if is_landfall_command(&joined) {
            commands.push((start, joined));
        } else if let Some(command) = unwrap_pod_command(&joined) {
            commands.push((start, command));
        }
    }
    commands
}

fn is_landfall_command(line: &str) -> bool {
    let line = line.strip_prefix("$ ").unwrap_or(line);
    shell_words(line)
        .iter()
        .find(|word| !is_assignment(word))
        .is_some_and(|word| word == "landfall")
}

/// `landfall-pod <CONNECTOR> [NAME=value ...] ARGS` as the `landfall ARGS` it runs in the pod
/// (the words after the connector joined back, so pipes and comments were already cut off).
fn unwrap_pod_command(line: &str) -> Option<String> {
    let line = line.strip_prefix("$ ").unwrap_or(line);
    let words = shell_words(line);
    let mut words = words.iter().skip_while(|word| is_assignment(word));
    if words.next()? != POD_WRAPPER {
        return None;
    }
    words.next()?; // the connector
    let args: Vec<&String> = words.skip_while(|word| is_assignment(word)).collect();
    let quoted: Vec<String> = args
        .iter()
        .map(|word| {
            if word.contains(char::is_whitespace) {
                format!("'{word}'")
            } else {
                (*word).clone()
            }
        })
        .collect();
    Some(format!("landfall {}", quoted.join(" ")).trim_end().to_owned())
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// Substitutes placeholders and parses the command with the real CLI.
fn check_command(command: &str) -> Result<(), String> {
    let placeholder = Regex::new(r"<([A-Z][A-Z0-9_]*)>").unwrap();
    let mut unknown = Vec::new();
    let substituted = placeholder.replace_all(command, |captures: &regex::Captures<'_>| {
        match PLACEHOLDERS.iter().find(|(name, _)| *name == &captures[1]) {
            Some((_, sample)) => (*sample).to_owned(),
            None => {
                unknown.push(captures[0].to_owned());
                captures[0].to_owned()
            }
        }
    });
    if !unknown.is_empty() {
        return Err(format!(
            "`{command}`: placeholder {} has no sample value (add it to PLACEHOLDERS and the README table)",
            unknown.join(", ")
        ));
    }
    let line = substituted.strip_prefix("$ ").unwrap_or(&substituted);
    let args: Vec<String> = shell_words(line)
        .into_iter()
        .skip_while(|word| is_assignment(word))
        .collect();
    match Cli::try_parse_from(&args) {
        Ok(_) => Ok(()),
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Ok(()),
        Err(error) => Err(format!(
            "`{command}` does not parse: {}",
            error.render().to_string().lines().next().unwrap_or_default()
        )),
    }
}

/// Every problem of one page, as `line N: message`.
fn check_page(page: &str, catalogue: &Catalogue, is_index: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let event_patterns = [
        Regex::new(r"`event:([A-Za-z0-9_]+)`").unwrap(),
        Regex::new(r#"\.event\s*==\s*"([^"]*)""#).unwrap(),
        Regex::new(r#""event"\s*:\s*"([^"]*)""#).unwrap(),
    ];
    let code_patterns = [
        Regex::new(r#"\.code\s*==\s*"([^"]*)""#).unwrap(),
        Regex::new(r#""code"\s*:\s*"([^"]*)""#).unwrap(),
    ];
    let inline_code = Regex::new(r"`([^`]+)`").unwrap();
    let screaming = Regex::new(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$").unwrap();
    let exit = Regex::new(r"(?i)\bexit(?: code)? (\d+)\b").unwrap();
    let placeholder = Regex::new(r"<([A-Z][A-Z0-9_]*)>").unwrap();

    for block in blocks(page) {
        let at = |message: String| format!("line {}: {message}", block.line);
        for pattern in &event_patterns {
            for captures in pattern.captures_iter(&block.text) {
                if !catalogue.events.contains(&captures[1]) {
                    problems.push(at(format!("unknown event `{}`", &captures[1])));
                }
            }
        }
        for pattern in &code_patterns {
            for captures in pattern.captures_iter(&block.text) {
                if !catalogue.codes.contains(&captures[1]) {
                    problems.push(at(format!("unknown error code `{}`", &captures[1])));
                }
            }
        }
        for captures in exit.captures_iter(&block.text) {
            let code: u32 = captures[1].parse().unwrap_or(u32::MAX);
            if !EXIT_CODES.contains(&code) {
                problems.push(at(format!("exit {code} is not an exit code Landfall uses")));
            }
        }
        for captures in placeholder.captures_iter(&block.text) {
            let name = &captures[1];
            if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) && !TEXT_PLACEHOLDERS.contains(&name) {
                problems.push(at(format!("unknown placeholder <{name}>")));
            }
        }
        if block.fenced {
            for (offset, command) in commands_in_code(&block.text) {
                if let Err(message) = check_command(&command) {
                    problems.push(format!("line {}: {message}", block.line + offset));
                }
            }
        } else {
            for captures in inline_code.captures_iter(&block.text) {
                let span = captures[1].trim();
                if screaming.is_match(span) && !catalogue.codes.contains(span) {
                    problems.push(at(format!(
                        "`{span}` reads as an error code but is not one (write environment variables as `${span}`)"
                    )));
                }
                if span.starts_with("landfall ")
                    && let Err(message) = check_command(span)
                {
                    problems.push(at(message));
                }
            }
        }
    }

    if !is_index {
        problems.extend(on_call_problems(page));
        let mut from = 0;
        for section in SECTIONS {
            match page[from..].find(&format!("\n{section}\n")) {
                Some(found) => from += found + section.len(),
                None => problems.push(format!("section `{section}` is missing or out of order")),
            }
        }
    }
    problems
}

/// What keeps a page usable from where on-call stands (issue 20).
fn on_call_problems(page: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let head = page.split("\n## Symptoms\n").next().unwrap_or(page);
    let severity = Regex::new(r"(?m)^\*\*Severity:\*\* \S.*\*\*Impact:\*\* \S").unwrap();
    if !severity.is_match(head) {
        problems.push("no `**Severity:** ... **Impact:** ...` line before `## Symptoms`".to_owned());
    }
    for block in blocks(page).iter().filter(|block| block.fenced) {
        for (offset, line) in block.text.lines().enumerate() {
            let at = block.line + offset;
            let code = line.split(" #").next().unwrap_or(line);
            if is_landfall_command(line.trim()) {
                problems.push(format!(
                    "line {at}: `{}` runs on a laptop: run it in the cluster through `{POD_WRAPPER} <CONNECTOR>`",
                    line.trim()
                ));
            }
            if let Some(cli) = STORE_SPECIFIC.iter().find(|cli| code.contains(*cli)) {
                problems.push(format!(
                    "line {at}: `{}` is for one store only: use lake-ls, lake-cat or lake-rm",
                    cli.trim()
                ));
            }
            if code.contains("logs <POD>") {
                problems.push(format!(
                    "line {at}: the pod is deleted when its task ends: read the Airflow task log (landfall-task-log)"
                ));
            }
        }
    }
    problems
}

fn pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = std::fs::read_dir(runbooks_dir())
        .expect("runbooks/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    pages.sort();
    pages
}

#[test]
fn runbooks_use_only_commands_events_and_codes_that_exist() {
    let catalogue = Catalogue::from_code();
    let pages = pages();
    assert!(pages.len() >= 14, "the index and thirteen situations");
    let mut problems = Vec::new();
    for (name, text) in &pages {
        for problem in check_page(text, &catalogue, name == "README.md") {
            problems.push(format!("runbooks/{name} {problem}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_index_lists_every_page_every_error_code_and_every_exit_code() {
    let pages = pages();
    let index = &pages
        .iter()
        .find(|(name, _)| name == "README.md")
        .expect("runbooks/README.md")
        .1;
    let link = Regex::new(r"\]\(([a-z0-9-]+\.md)\)").unwrap();
    for (name, text) in &pages {
        if name != "README.md" {
            assert!(
                index.contains(&format!("]({name})")),
                "runbooks/README.md does not link {name}"
            );
        }
        for captures in link.captures_iter(text) {
            assert!(
                runbooks_dir().join(&captures[1]).exists(),
                "runbooks/{name} links {} which does not exist",
                &captures[1]
            );
        }
    }
    for code in ErrorCode::ALL {
        assert!(
            index.contains(&format!("| `{}` |", code.as_str())),
            "the error code table of runbooks/README.md lacks {}",
            code.as_str()
        );
    }
    for exit in [0, 1, 2, 3, 4, 75] {
        assert!(
            index.contains(&format!("\n| {exit} |")),
            "the exit code table of runbooks/README.md lacks {exit}"
        );
    }
    for (name, _) in PLACEHOLDERS {
        assert!(
            index.contains(&format!("`<{name}>`")),
            "the placeholder table lacks <{name}>"
        );
    }
}

#[test]
fn the_debug_pod_recipe_runs_as_the_connector_under_the_network_policy() {
    let index = std::fs::read_to_string(runbooks_dir().join("README.md")).unwrap();
    let start = index.find("landfall-pod() {").expect("README defines landfall-pod");
    let recipe = &index[start..start + index[start..].find("\n}\n").expect("end of landfall-pod")];
    // The chart's NetworkPolicy selects pods by these labels (landfall.podIdentityLabels).
    let helpers =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/landfall/templates/_helpers.tpl"))
            .unwrap();
    let identity = helpers
        .split("define \"landfall.podIdentityLabels\"")
        .nth(1)
        .and_then(|rest| rest.split("{{- end }}").next())
        .expect("landfall.podIdentityLabels in _helpers.tpl");
    assert!(identity.contains("app.kubernetes.io/name: {{ include \"landfall.name\" . }}"));
    assert!(identity.contains("app.kubernetes.io/component: extractor"));
    for needle in [
        "app.kubernetes.io/name=landfall,app.kubernetes.io/component=extractor",
        "serviceAccountName: $sa",
        "LANDFALL_SERVICE_ACCOUNT:-landfall",
        "configMap: {name: $name}",
        "envFrom: [{secretRef: {name: $name}}]",
        "local name=\"landfall-${connector//_/-}\"",
        "readOnlyRootFilesystem: true",
        "capabilities: {drop: [\"ALL\"]}",
        "mountPath: \"/etc/landfall\"",
        "args: $ARGS.positional",
        "--rm",
    ] {
        assert!(
            recipe.contains(needle),
            "the landfall-pod recipe lacks {needle:?}:\n{recipe}"
        );
    }
    for helper in ["landfall-task-log() {", "lake-ls()", "lake-cat()", "lake-rm()"] {
        assert!(index.contains(helper), "runbooks/README.md does not define {helper}");
    }
    for store in ["aws s3 ls", "gcloud storage ls", "az storage blob list"] {
        assert!(index.contains(store), "lake-ls has no variant with {store}");
    }
}

// The checker itself, on pages written to break each rule.

const GOOD_PAGE: &str = "# Good\n\n**Severity:** P3. **Impact:** none.\n\n## Symptoms\n\n- exit 4 with `AUTH_FAILED` and `event:stream_failed`;\n  `$LANDFALL_LOG` set.\n\n## Diagnosis\n\n```sh\nlandfall-pod <CONNECTOR> LANDFALL_LOG=debug check --config <CONFIG> 2>&1 | jq -c 'select(.event == \"check_step\")'\nlandfall-pod <CONNECTOR> run --config <CONFIG> --stream <STREAM> \\\n  --start <START> --end <END>\nlake-ls <LANDING>/<SOURCE>/_state/\nlandfall-task-log landfall_<SOURCE> <DAG_RUN_ID> <TASK_ID> | jq .\n```\n\n## Fix\n\nRun `landfall state set --config <CONFIG>\n--stream <STREAM> --value <CURSOR>`.\n\n## Verify\n\nexit 0.\n\n## Escalation\n\nNobody.\n";

#[test]
fn the_checker_accepts_a_page_that_follows_the_conventions() {
    let problems = check_page(GOOD_PAGE, &Catalogue::from_code(), false);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checker_finds_each_kind_of_rot() {
    let bad = "# Bad\n\n## Symptoms\n\n- `event:rate_limitted`, code `AUTH_FAILURE`, exit 5.\n- set `LANDFALL_LOG` (an environment variable written like a code).\n\n## Diagnosis\n\n```sh\nkubectl logs <POD> | jq 'select(.event == \"page_fetch\" and .code == \"SERVER_ERR\")'\nlandfall state show --stream <STREAM> --bogus\nlandfall run --config <CONFIG> --max-duration 0s\nlandfall run --config <WHATEVER>\nlandfall stat show --config <CONFIG> \\\n  --stream <STREAM>\naws s3 ls <LANDING>/\nlandfall-pod <CONNECTOR> state show --bogus\n```\n\n## Fix\n\nUse `landfall state sett --config <CONFIG>`.\n\n## Escalation\n\nNobody.\n";
    let problems = check_page(bad, &Catalogue::from_code(), false);
    let expected = [
        "unknown event `rate_limitted`",
        "unknown event `page_fetch`",
        "`AUTH_FAILURE` reads as an error code",
        "unknown error code `SERVER_ERR`",
        "`LANDFALL_LOG` reads as an error code",
        "exit 5 is not an exit code",
        "`landfall state show --stream <STREAM> --bogus` does not parse",
        "`landfall run --config <CONFIG> --max-duration 0s` does not parse",
        "placeholder <WHATEVER> has no sample value",
        "unknown placeholder <WHATEVER>",
        "`landfall stat show --config <CONFIG>",
        "`landfall state sett --config <CONFIG>` does not parse",
        "section `## Verify` is missing or out of order",
        "no `**Severity:** ... **Impact:** ...` line",
        "the pod is deleted when its task ends",
        "`aws s3` is for one store only",
        "`landfall state show --bogus` does not parse",
    ];
    for message in expected {
        assert!(
            problems.iter().any(|problem| problem.contains(message)),
            "expected a problem containing {message:?} in {problems:#?}"
        );
    }
    // Each of the four bare `landfall` lines is also told to run through landfall-pod.
    let laptop = problems
        .iter()
        .filter(|problem| problem.contains("runs on a laptop"))
        .count();
    assert_eq!(laptop, 4, "{problems:#?}");
    assert_eq!(problems.len(), expected.len() + laptop, "{problems:#?}");
}

#[test]
fn shell_words_stop_at_pipes_redirections_and_comments() {
    assert_eq!(
        shell_words("landfall check --config 'my config.yaml' 2>&1 | jq ."),
        ["landfall", "check", "--config", "my config.yaml"]
    );
    assert_eq!(shell_words("landfall spec > schema.json"), ["landfall", "spec"]);
    assert_eq!(shell_words("landfall spec # the schema"), ["landfall", "spec"]);
    assert_eq!(shell_words("A=1 landfall spec && echo ok"), ["A=1", "landfall", "spec"]);
    assert!(is_landfall_command("$ LANDFALL_LOG=debug landfall check"));
    assert!(!is_landfall_command("kubectl logs pod | landfall"));
}
