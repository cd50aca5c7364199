//! Who may call (`--callers-file`): callers known by the SHA-256 of their
//! bearer token, each allowed some subaccounts and some scopes. The file
//! holds hashes only, so it can sit in a config repository.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a caller may do; `Read` covers GetSession, WatchSession and
/// CheckSmaCoverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Start,
    Check,
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Start => "start",
            Scope::Check => "check",
            Scope::Read => "read",
        }
    }
}

#[derive(Debug)]
pub struct Caller {
    pub name: String,
    subaccounts: HashSet<String>,
    scopes: HashSet<Scope>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn may_use(&self, subaccount: &str) -> bool {
        self.subaccounts.contains(subaccount)
    }

    pub fn subaccounts(&self) -> impl Iterator<Item = &str> {
        self.subaccounts.iter().map(String::as_str)
    }
}

/// The callers of the file, found by their token's hash.
#[derive(Debug, Default)]
pub struct Callers {
    by_token_hash: HashMap<[u8; 32], Arc<Caller>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    caller: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token_sha256: String,
    subaccounts: Vec<String>,
    scopes: Vec<Scope>,
}

impl Callers {
    /// Parses the TOML text; every mistake is an error naming the caller.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.caller.is_empty() {
            return Err("no [[caller]] table: nobody could call".into());
        }
        let mut callers = Callers::default();
        let mut names = HashSet::new();
        for entry in file.caller {
            let name = entry.name.trim().to_owned();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(format!("caller name {name:?} is empty or given twice"));
            }
            let hash: [u8; 32] = hex::decode(entry.token_sha256.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    format!("caller {name:?}: token_sha256 must be 64 hex digits (sha256sum of the token)")
                })?;
            if entry.subaccounts.is_empty() || entry.scopes.is_empty() {
                return Err(format!(
                    "caller {name:?}: give at least one subaccount and one scope"
                ));
            }
            let caller = Arc::new(Caller {
                name: name.clone(),
                subaccounts: entry.subaccounts.into_iter().collect(),
                scopes: entry.scopes.into_iter().collect(),
            });
            if callers.by_token_hash.insert(hash, caller).is_some() {
                return Err(format!(
                    "caller {name:?}: the same token hash as another caller"
                ));
            }
        }
        Ok(callers)
    }

    /// The caller whose token this is.
    pub fn identify(&self, token: &str) -> Option<Arc<Caller>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_token_hash.get(&hash).cloned()
    }

    /// Every subaccount some caller may use.
    pub fn subaccounts(&self) -> impl Iterator<Item = &str> {
        self.by_token_hash
            .values()
            .flat_map(|caller| caller.subaccounts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("s3cret")
    const HASH: &str = "5f5ea8aa2b0a6bd6a5e1e3e3c4d8b0e1b2d3c4e5f60718293a4b5c6d7e8f9a0b";

    fn file(hash: &str) -> String {
        format!(
            "[[caller]]\nname = \"billing\"\ntoken_sha256 = \"{hash}\"\nsubaccounts = [\"acme_verif8\"]\nscopes = [\"start\", \"read\"]\n"
        )
    }

    #[test]
    fn identifies_a_caller_by_its_tokens_hash() {
        let hash = hex::encode(Sha256::digest(b"s3cret"));
        let callers = Callers::parse(&file(&hash)).unwrap();
        let caller = callers.identify("s3cret").unwrap();
        assert_eq!(caller.name, "billing");
        assert!(caller.may(Scope::Start) && caller.may(Scope::Read) && !caller.may(Scope::Check));
        assert!(caller.may_use("acme_verif8") && !caller.may_use("other_sub"));
        assert!(callers.identify("s3cre").is_none());
    }

    #[test]
    fn refuses_malformed_files() {
        assert!(
            Callers::parse(&file("abc"))
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(Callers::parse("").unwrap_err().contains("no [[caller]]"));
        let unknown_scope = file(HASH).replace("\"read\"", "\"admin\"");
        assert!(Callers::parse(&unknown_scope).is_err());
        let twice = format!("{}{}", file(HASH), file(HASH));
        assert!(Callers::parse(&twice).unwrap_err().contains("twice"));
    }
}
