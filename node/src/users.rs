//! Users and their pipe privileges, in `system/users.json`.
//!
//! `root` (password from the configuration, default `root`) holds every
//! privilege and alone manages users. Other users hold what they were
//! granted: the pipe privileges CREATE_PIPE, START_PIPE, STOP_PIPE,
//! DROP_PIPE and SHOW_PIPES (path-independent, as in IoTDB 1.2). Data
//! statements are not restricted by privileges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The privileges a user can be granted.
pub const PRIVILEGES: [&str; 5] = [
    "CREATE_PIPE",
    "START_PIPE",
    "STOP_PIPE",
    "DROP_PIPE",
    "SHOW_PIPES",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct User {
    password: String,
    privileges: BTreeSet<String>,
}

/// The user registry.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    root_password: String,
    users: Mutex<BTreeMap<String, User>>,
}

impl Users {
    /// Loads `dir/users.json` (none yet: only root).
    ///
    /// # Errors
    /// An unreadable or damaged file.
    pub fn open(dir: &Path, root_password: &str) -> Result<Users, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("users.json");
        let users = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Users {
            path,
            root_password: root_password.to_string(),
            users: Mutex::new(users),
        })
    }

    fn save(&self, users: &BTreeMap<String, User>) -> Result<(), String> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let io = |e: std::io::Error| format!("{}: {e}", self.path.display());
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(users).expect("serialize users"))
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Whether `name`/`password` may log in.
    pub fn login(&self, name: &str, password: &str) -> bool {
        if name == "root" {
            return password == self.root_password;
        }
        self.users
            .lock()
            .expect("users lock")
            .get(name)
            .is_some_and(|u| u.password == password)
    }

    /// Whether `name` holds `privilege`.
    pub fn has(&self, name: &str, privilege: &str) -> bool {
        name == "root"
            || self
                .users
                .lock()
                .expect("users lock")
                .get(name)
                .is_some_and(|u| u.privileges.contains(privilege))
    }

    /// Creates a user.
    ///
    /// # Errors
    /// An existing user or a bad name.
    pub fn create(&self, name: &str, password: &str) -> Result<(), String> {
        if name == "root" || name.is_empty() {
            return Err(format!("user {name} cannot be created"));
        }
        if password.len() < 4 {
            return Err("the password must be at least 4 characters".into());
        }
        let mut u = self.users.lock().expect("users lock");
        if u.contains_key(name) {
            return Err(format!("user {name} already exists"));
        }
        u.insert(
            name.into(),
            User {
                password: password.into(),
                privileges: BTreeSet::new(),
            },
        );
        self.save(&u)
    }

    /// Drops a user.
    ///
    /// # Errors
    /// An unknown user.
    pub fn drop_user(&self, name: &str) -> Result<(), String> {
        let mut u = self.users.lock().expect("users lock");
        if u.remove(name).is_none() {
            return Err(format!("user {name} does not exist"));
        }
        self.save(&u)
    }

    /// Grants (or revokes) privileges.
    ///
    /// # Errors
    /// An unknown user or privilege.
    pub fn set(&self, name: &str, privileges: &[String], grant: bool) -> Result<(), String> {
        for p in privileges {
            if !PRIVILEGES.contains(&p.as_str()) {
                return Err(format!(
                    "unknown privilege {p}; one of {}",
                    PRIVILEGES.join(", ")
                ));
            }
        }
        let mut u = self.users.lock().expect("users lock");
        let Some(user) = u.get_mut(name) else {
            return Err(format!("user {name} does not exist"));
        };
        for p in privileges {
            if grant {
                user.privileges.insert(p.clone());
            } else {
                user.privileges.remove(p);
            }
        }
        self.save(&u)
    }

    /// All user names, root first.
    pub fn list(&self) -> Vec<String> {
        std::iter::once("root".to_string())
            .chain(self.users.lock().expect("users lock").keys().cloned())
            .collect()
    }
}
