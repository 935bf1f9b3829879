//! The driver's options: the registry URL and the repository.

use super::*;

/// The parsed options.
#[derive(Clone)]
pub(crate) struct Conf {
    pub(crate) url: String,
    pub(crate) ep: Endpoint,
    pub(crate) repo: String,
}

thread_local! {
    static CONF: RefCell<Option<Conf>> = const { RefCell::new(None) };
}

pub(crate) fn conf() -> Result<Conf> {
    if let Some(c) = CONF.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let mut url = None;
    let mut repo = None;
    for (k, v) in config() {
        match k.as_str() {
            "url" => url = Some(v),
            "repo" => repo = Some(v),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {k:?} (the registry driver takes url= and repo=)"
                )));
            }
        }
    }
    let url = url.ok_or_else(|| {
        Error::InvalidArgument(
            "no registry given: use --driver registry.wasm,url=http://HOST:PORT".into(),
        )
    })?;
    let ep = names::parse_url(&url).map_err(Error::InvalidArgument)?;
    let repo = repo.ok_or_else(|| {
        Error::InvalidArgument("no repository given: use repo=NAME or the layout path".into())
    })?;
    names::check_repo(&repo).map_err(Error::InvalidArgument)?;
    let c = Conf {
        url: url.trim_end_matches('/').to_string(),
        ep,
        repo,
    };
    CONF.with(|s| *s.borrow_mut() = Some(c.clone()));
    Ok(c)
}
