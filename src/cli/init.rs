//! `landfall init`: the flags checked and turned into a [`Draft`], the proposal written.

use std::path::Path;

use super::args::{InitArgs, InitAuth};
use super::fail;
use crate::error::{Classify, Exit};
use crate::http::config::ApiKeyLocation;
use crate::init::{AuthDraft, Draft, InitError};

/// Runs `landfall init` against the process environment.
pub async fn init(args: InitArgs) -> Exit {
    let lookup_env = |name: &str| std::env::var(name).ok();
    let result = async {
        let (draft, params) = draft(&args, &lookup_env)?;
        if let Some(path) = &args.output
            && path.exists()
            && !args.force
        {
            return Err(InitError::Usage(format!(
                "{} exists; pass --force to overwrite it",
                path.display()
            )));
        }
        let proposed = crate::init::propose(&draft, &params, &lookup_env).await?;
        Ok((draft, proposed))
    }
    .await;
    let (draft, proposed) = match result {
        Ok(done) => done,
        Err(error) => {
            let exit = Exit::for_error(error.code(), error.retryable());
            return fail(format_args!("init: {error}"), exit);
        }
    };
    let proposal = &proposed.proposal;
    let cursor = match &proposal.incremental {
        crate::init::infer::CursorGuess::Found { field, .. } => field.clone(),
        crate::init::infer::CursorGuess::FieldOnly { field, .. } => format!("none (candidate {field}, TODO)"),
        crate::init::infer::CursorGuess::None => "none".to_owned(),
    };
    let summary = format!(
        "stream {}: records_path {:?}, primary_key [{}], pagination {}, incremental {}",
        draft.stream_name,
        proposal.records.path,
        proposal.primary_key.fields.join(", "),
        proposal.pagination.kind(),
        cursor
    );
    match &args.output {
        None => {
            print!("{}", proposed.yaml);
            eprintln!("landfall: {summary}");
        }
        Some(path) => {
            if let Err(error) = write(path, &proposed.yaml) {
                return fail(format_args!("cannot write {}: {error}", path.display()), Exit::Failure);
            }
            println!("wrote {}: {summary}", path.display());
            println!(
                "next: read its TODO comments, then `landfall check --config {}`",
                path.display()
            );
        }
    }
    Exit::Succeeded
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(path, text)
}

fn usage(message: impl Into<String>) -> InitError {
    InitError::Usage(message.into())
}

/// `${env:NAME}` for a flag that names an environment variable. A value that is not a
/// variable name, or names an unset one, is refused without being echoed unless it looks
/// like a conventional name: it may be the secret itself, typed in the wrong place.
fn env_reference(flag: &str, name: &str, lookup_env: &dyn Fn(&str) -> Option<String>) -> Result<String, InitError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(usage(format!(
            "{flag} takes the name of an environment variable (e.g. API_TOKEN), not a value"
        )));
    }
    if lookup_env(name).is_none() {
        let conventional = name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        return Err(usage(if conventional {
            format!("{flag} {name}: the environment variable is not set")
        } else {
            format!(
                "{flag} names an environment variable that is not set (its name is not shown: it does not look \
                 like one; pass the variable's name, not the secret)"
            )
        }));
    }
    Ok(format!("${{env:{name}}}"))
}

/// `NAME=ENV` of --header-env and --query-env.
fn split_pair<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str), InitError> {
    text.split_once('=')
        .filter(|(name, env)| !name.trim().is_empty() && !env.is_empty())
        .map(|(name, env)| (name.trim(), env))
        .ok_or_else(|| usage(format!("{flag} takes NAME=ENV, e.g. X-Api-Key=API_KEY")))
}

/// The auth kind the flags given imply.
fn implied_auth(args: &InitArgs) -> Result<InitAuth, InitError> {
    let mut kinds = Vec::new();
    if args.token_env.is_some() {
        kinds.push(InitAuth::Bearer);
    }
    if args.username.is_some() || args.username_env.is_some() || args.password_env.is_some() {
        kinds.push(InitAuth::Basic);
    }
    if args.header_env.is_some() || args.query_env.is_some() {
        kinds.push(InitAuth::ApiKey);
    }
    if args.token_url.is_some()
        || args.client_id.is_some()
        || args.client_secret_env.is_some()
        || args.refresh_token_env.is_some()
        || !args.scopes.is_empty()
    {
        kinds.push(InitAuth::Oauth2);
    }
    match (kinds.as_slice(), args.auth) {
        ([], None) => Ok(InitAuth::None),
        ([], Some(InitAuth::None)) => Ok(InitAuth::None),
        ([kind], None) => Ok(*kind),
        ([kind], Some(chosen)) if *kind == chosen => Ok(chosen),
        ([], Some(chosen)) => Err(usage(format!(
            "--auth {} needs its flags: {}",
            auth_name(chosen),
            auth_flags(chosen)
        ))),
        (_, chosen) => Err(usage(format!(
            "the auth flags given belong to different kinds{}: use one of bearer ({}), basic ({}), api_key ({}), \
             oauth2 ({})",
            chosen
                .map(|kind| format!(" (or not to --auth {})", auth_name(kind)))
                .unwrap_or_default(),
            auth_flags(InitAuth::Bearer),
            auth_flags(InitAuth::Basic),
            auth_flags(InitAuth::ApiKey),
            auth_flags(InitAuth::Oauth2)
        ))),
    }
}

fn auth_name(kind: InitAuth) -> &'static str {
    match kind {
        InitAuth::None => "none",
        InitAuth::Bearer => "bearer",
        InitAuth::Basic => "basic",
        InitAuth::ApiKey => "api_key",
        InitAuth::Oauth2 => "oauth2",
    }
}

fn auth_flags(kind: InitAuth) -> &'static str {
    match kind {
        InitAuth::None => "none",
        InitAuth::Bearer => "--token-env",
        InitAuth::Basic => "--username or --username-env, --password-env",
        InitAuth::ApiKey => "--header-env or --query-env",
        InitAuth::Oauth2 => "--token-url, --client-id, --client-secret-env, --refresh-token-env, --scope",
    }
}

fn auth(args: &InitArgs, lookup_env: &dyn Fn(&str) -> Option<String>) -> Result<AuthDraft, InitError> {
    let env = |flag: &str, name: &Option<String>| -> Result<Option<String>, InitError> {
        name.as_deref()
            .map(|name| env_reference(flag, name, lookup_env))
            .transpose()
    };
    Ok(match implied_auth(args)? {
        InitAuth::None => AuthDraft::None,
        InitAuth::Bearer => AuthDraft::Bearer {
            token: env("--token-env", &args.token_env)?.expect("implied by --token-env"),
        },
        InitAuth::Basic => {
            let username = match (&args.username, env("--username-env", &args.username_env)?) {
                (Some(text), _) => text.clone(),
                (None, Some(reference)) => reference,
                (None, None) => return Err(usage("--auth basic needs --username or --username-env")),
            };
            AuthDraft::Basic {
                username,
                password: env("--password-env", &args.password_env)?,
            }
        }
        InitAuth::ApiKey => {
            let (flag, text, location) = match (&args.header_env, &args.query_env) {
                (Some(text), _) => ("--header-env", text, ApiKeyLocation::Header),
                (None, Some(text)) => ("--query-env", text, ApiKeyLocation::Query),
                (None, None) => unreachable!("implied by --header-env or --query-env"),
            };
            let (name, variable) = split_pair(flag, text)?;
            AuthDraft::ApiKey {
                location,
                name: name.to_owned(),
                value: env_reference(flag, variable, lookup_env)?,
            }
        }
        InitAuth::Oauth2 => {
            let missing = |flag: &str| usage(format!("--auth oauth2 needs {flag}"));
            AuthDraft::OAuth2 {
                token_url: args.token_url.clone().ok_or_else(|| missing("--token-url"))?,
                client_id: args.client_id.clone().ok_or_else(|| missing("--client-id"))?,
                client_secret: env("--client-secret-env", &args.client_secret_env)?
                    .ok_or_else(|| missing("--client-secret-env"))?,
                refresh_token: env("--refresh-token-env", &args.refresh_token_env)?,
                scopes: args.scopes.clone(),
            }
        }
    })
}

/// The draft and the request's parameters, from the flags.
fn draft(
    args: &InitArgs,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Draft, Vec<(String, String)>), InitError> {
    let base = url::Url::parse(&args.base_url).map_err(|error| usage(format!("--base-url is not a URL: {error}")))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(usage("--base-url must be an http or https URL"));
    }
    if !args.path.starts_with('/') {
        return Err(usage("--path must start with / (it is appended to --base-url)"));
    }
    let mut headers = Vec::new();
    for text in &args.headers {
        let Some((name, value)) = text.split_once(':').filter(|(name, _)| !name.trim().is_empty()) else {
            return Err(usage("--header takes 'NAME: VALUE'"));
        };
        let name = name.trim();
        if crate::config::secret::is_credential_name(name) {
            return Err(usage(format!(
                "--header {name} looks like a credential: pass it with --header-env {name}=ENV (or --token-env), \
                 never as a value"
            )));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut params = Vec::new();
    for text in &args.params {
        let Some((name, value)) = text.split_once('=').filter(|(name, _)| !name.is_empty()) else {
            return Err(usage("--param takes NAME=VALUE"));
        };
        if crate::config::secret::is_credential_name(name) {
            return Err(usage(format!(
                "--param {name} looks like a credential: pass it with --query-env {name}=ENV, never as a value"
            )));
        }
        params.push((name.to_owned(), value.to_owned()));
    }
    let name_flag = |flag: &str, given: &Option<String>, default: String| -> Result<String, InitError> {
        match given {
            None => Ok(default),
            Some(name) if crate::init::config_name(name).as_deref() == Some(name.as_str()) => Ok(name.clone()),
            Some(_) => Err(usage(format!("{flag} must match [a-z][a-z0-9_]*"))),
        }
    };
    let draft = Draft {
        source_name: name_flag("--name", &args.name, crate::init::source_name(&args.base_url))?,
        base_url: args.base_url.trim_end_matches('/').to_owned(),
        headers,
        auth: auth(args, lookup_env)?,
        stream_name: name_flag("--stream", &args.stream, crate::init::stream_name(&args.path))?,
        path: args.path.clone(),
    };
    Ok((draft, params))
}
