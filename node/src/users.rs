//! Users, their passwords and privileges, in `system/users.json`.
//!
//! `root` (password from the configuration, default `root`) holds every
//! privilege. Other users hold what they were granted, as in IoTDB 1.2: a
//! privilege on a path pattern (`GRANT USER u PRIVILEGES INSERT_TIMESERIES
//! ON root.sg.**`). Path-independent privileges (pipes, users, ...) live on
//! `root.**`, where a `GRANT` without `ON` puts every privilege. A
//! statement is allowed when each of its paths is covered by a granted
//! pattern holding the privilege it needs (IoTDB's `matchFullPath`).
//!
//! Passwords are stored as argon2id hashes (PHC strings, a random salt
//! each); the file is written mode 0600 by a write-and-rename. A file of an
//! older edgepipe (plain passwords, pipe privileges only) is migrated when
//! loaded.
//!
//! Failed logins are throttled per client address: after
//! [`FREE_FAILURES`] failures, the address may try again only after a wait
//! that doubles with each further failure, up to [`MAX_LOGIN_WAIT`]. An
//! attempt inside the wait is refused at once, without looking at the
//! password, so guessing costs the node nothing and gains nothing. Other
//! addresses are not affected; a successful login clears its address.
//!
//! ```text
//! users.json (version 2)
//! { "version": 2,
//!   "users": { "alice": { "password_hash": "$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>",
//!                         "privileges": { "root.sg.**": ["INSERT_TIMESERIES", ...] } } } }
//! version 1 (before): { "alice": { "password": "<plain>", "privileges": ["CREATE_PIPE", ...] } }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use protocol::types::status;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::sql::Path;

/// IoTDB 1.2's privileges (`PrivilegeType`), in its order, and whether each
/// is path-relevant (may be granted on a path other than `root.**`).
pub const PRIVILEGES: [(&str, bool); 48] = [
    ("CREATE_DATABASE", true),
    ("INSERT_TIMESERIES", true),
    ("UPDATE_TIMESERIES", true),
    ("READ_TIMESERIES", true),
    ("CREATE_TIMESERIES", true),
    ("DELETE_TIMESERIES", true),
    ("CREATE_USER", false),
    ("DELETE_USER", false),
    ("MODIFY_PASSWORD", false),
    ("LIST_USER", false),
    ("GRANT_USER_PRIVILEGE", false),
    ("REVOKE_USER_PRIVILEGE", false),
    ("GRANT_USER_ROLE", false),
    ("REVOKE_USER_ROLE", false),
    ("CREATE_ROLE", false),
    ("DELETE_ROLE", false),
    ("LIST_ROLE", false),
    ("GRANT_ROLE_PRIVILEGE", false),
    ("REVOKE_ROLE_PRIVILEGE", false),
    ("CREATE_FUNCTION", false),
    ("DROP_FUNCTION", false),
    ("CREATE_TRIGGER", true),
    ("DROP_TRIGGER", true),
    ("START_TRIGGER", true),
    ("STOP_TRIGGER", true),
    ("CREATE_CONTINUOUS_QUERY", false),
    ("DROP_CONTINUOUS_QUERY", false),
    ("ALL", false),
    ("DELETE_DATABASE", true),
    ("ALTER_TIMESERIES", true),
    ("UPDATE_TEMPLATE", false),
    ("READ_TEMPLATE", false),
    ("APPLY_TEMPLATE", true),
    ("READ_TEMPLATE_APPLICATION", false),
    ("SHOW_CONTINUOUS_QUERIES", false),
    ("CREATE_PIPEPLUGIN", false),
    ("DROP_PIPEPLUGIN", false),
    ("SHOW_PIPEPLUGINS", false),
    ("CREATE_PIPE", false),
    ("START_PIPE", false),
    ("STOP_PIPE", false),
    ("DROP_PIPE", false),
    ("SHOW_PIPES", false),
    ("CREATE_VIEW", true),
    ("ALTER_VIEW", true),
    ("RENAME_VIEW", true),
    ("DELETE_VIEW", true),
    ("", false),
];

/// Number of privileges (the table's last row is padding).
const N_PRIVILEGES: usize = 47;

/// One privilege: its ordinal in IoTDB 1.2's `PrivilegeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Privilege(u8);

/// The privileges edgepipe's statements check, by IoTDB's names.
impl Privilege {
    /// IoTDB's `CREATE_DATABASE` (ordinal 0).
    pub const CREATE_DATABASE: Privilege = Privilege(0);
    /// IoTDB's `INSERT_TIMESERIES` (ordinal 1).
    pub const INSERT_TIMESERIES: Privilege = Privilege(1);
    /// IoTDB's `READ_TIMESERIES` (ordinal 3).
    pub const READ_TIMESERIES: Privilege = Privilege(3);
    /// IoTDB's `CREATE_TIMESERIES` (ordinal 4).
    pub const CREATE_TIMESERIES: Privilege = Privilege(4);
    /// IoTDB's `DELETE_TIMESERIES` (ordinal 5).
    pub const DELETE_TIMESERIES: Privilege = Privilege(5);
    /// IoTDB's `CREATE_USER` (ordinal 6).
    pub const CREATE_USER: Privilege = Privilege(6);
    /// IoTDB's `DELETE_USER` (ordinal 7).
    pub const DELETE_USER: Privilege = Privilege(7);
    /// IoTDB's `LIST_USER` (ordinal 9).
    pub const LIST_USER: Privilege = Privilege(9);
    /// IoTDB's `GRANT_USER_PRIVILEGE` (ordinal 10).
    pub const GRANT_USER_PRIVILEGE: Privilege = Privilege(10);
    /// IoTDB's `REVOKE_USER_PRIVILEGE` (ordinal 11).
    pub const REVOKE_USER_PRIVILEGE: Privilege = Privilege(11);
    /// IoTDB's `ALL` (ordinal 27).
    pub const ALL: Privilege = Privilege(27);
    /// IoTDB's `DELETE_DATABASE` (ordinal 28).
    pub const DELETE_DATABASE: Privilege = Privilege(28);
    /// IoTDB's `SHOW_PIPEPLUGINS` (ordinal 37).
    pub const SHOW_PIPEPLUGINS: Privilege = Privilege(37);
    /// IoTDB's `CREATE_PIPE` (ordinal 38).
    pub const CREATE_PIPE: Privilege = Privilege(38);
    /// IoTDB's `START_PIPE` (ordinal 39).
    pub const START_PIPE: Privilege = Privilege(39);
    /// IoTDB's `STOP_PIPE` (ordinal 40).
    pub const STOP_PIPE: Privilege = Privilege(40);
    /// IoTDB's `DROP_PIPE` (ordinal 41).
    pub const DROP_PIPE: Privilege = Privilege(41);
    /// IoTDB's `SHOW_PIPES` (ordinal 42).
    pub const SHOW_PIPES: Privilege = Privilege(42);
}

impl Privilege {
    /// The privilege named `name` (any case; `SET_STORAGE_GROUP` and
    /// `DELETE_STORAGE_GROUP` are IoTDB's old names of CREATE_DATABASE and
    /// DELETE_DATABASE).
    pub fn from_name(name: &str) -> Option<Privilege> {
        let n = name.to_ascii_uppercase();
        let n = match n.as_str() {
            "SET_STORAGE_GROUP" => "CREATE_DATABASE",
            "DELETE_STORAGE_GROUP" => "DELETE_DATABASE",
            other => other,
        };
        PRIVILEGES[..N_PRIVILEGES]
            .iter()
            .position(|(p, _)| *p == n)
            .map(|i| Privilege(i as u8))
    }

    /// IoTDB's name of the privilege.
    pub fn name(self) -> &'static str {
        PRIVILEGES[usize::from(self.0)].0
    }

    /// Whether it may be granted on a path other than `root.**`.
    pub fn is_path_relevant(self) -> bool {
        PRIVILEGES[usize::from(self.0)].1
    }

    fn bit(self) -> u64 {
        1 << self.0
    }

    /// Every privilege, in IoTDB's order.
    pub fn all() -> impl Iterator<Item = Privilege> {
        (0..N_PRIVILEGES as u8).map(Privilege)
    }
}

/// Failures an address may make before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The first wait imposed, doubled with each further failure.
pub const FIRST_LOGIN_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between two attempts from one address.
pub const MAX_LOGIN_WAIT: Duration = Duration::from_secs(60);
/// An address's failures are forgotten after this long without one.
pub const FORGET_FAILURES: Duration = Duration::from_secs(15 * 60);
/// Addresses whose failures are remembered at once (the oldest is
/// forgotten past this, so a spray of addresses cannot grow memory).
pub const MAX_TRACKED_ADDRESSES: usize = 4096;
/// Password hashes checked at once (each takes [`ARGON2_MEMORY_KIB`]).
const HASHING_SLOTS: usize = 2;
/// argon2id memory cost, KiB: OWASP's 7 MiB / 5 passes / 1 lane point, so a
/// check costs a few tens of milliseconds and little memory on an edge box.
pub const ARGON2_MEMORY_KIB: u32 = 7 * 1024;
/// argon2id passes.
pub const ARGON2_PASSES: u32 = 5;

/// The shortest password and user name (IoTDB's `MIN_PASSWORD_LENGTH`,
/// `MIN_USERNAME_LENGTH`).
pub const MIN_LENGTH: usize = 4;

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user or wrong password.
    Wrong,
    /// Too many recent failures from this address: try again after this.
    Throttled(Duration),
}

/// A user-management error: IoTDB's status code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    /// IoTDB status code (803 NO_PERMISSION, 804 USER_NOT_EXIST, ...).
    pub code: i32,
    /// What went wrong.
    pub message: String,
}

fn uerr(code: i32, message: impl Into<String>) -> UserError {
    UserError {
        code,
        message: message.into(),
    }
}

/// IoTDB's USER_NOT_EXIST.
const USER_NOT_EXIST: i32 = 804;
/// IoTDB's USER_ALREADY_EXIST.
const USER_ALREADY_EXIST: i32 = 805;
/// IoTDB's ALREADY_HAS_PRIVILEGE.
const ALREADY_HAS_PRIVILEGE: i32 = 810;
/// IoTDB's NOT_HAS_PRIVILEGE.
const NOT_HAS_PRIVILEGE: i32 = 811;
/// IoTDB's UNKNOWN_AUTH_PRIVILEGE.
const UNKNOWN_AUTH_PRIVILEGE: i32 = 813;
/// IoTDB's AUTH_IO_EXCEPTION.
const AUTH_IO_EXCEPTION: i32 = 815;

/// A user as stored (version 2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct StoredUser {
    password_hash: String,
    /// Path pattern → privilege names.
    privileges: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    version: u32,
    users: BTreeMap<String, StoredUser>,
}

/// A user of version 1 (plain password, path-independent privileges).
#[derive(Debug, Deserialize)]
struct StoredUserV1 {
    password: String,
    #[serde(default)]
    privileges: BTreeSet<String>,
}

/// A user in memory.
#[derive(Debug, Clone)]
struct User {
    password_hash: String,
    /// Granted patterns with their privileges as a bit set.
    grants: Vec<(Path, u64)>,
}

impl User {
    fn stored(&self) -> StoredUser {
        StoredUser {
            password_hash: self.password_hash.clone(),
            privileges: self
                .grants
                .iter()
                .map(|(p, bits)| {
                    (
                        p.to_string(),
                        Privilege::all()
                            .filter(|x| bits & x.bit() != 0)
                            .map(|x| x.name().to_string())
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    fn from_stored(name: &str, s: StoredUser) -> Result<User, String> {
        let mut grants = Vec::new();
        for (path, privs) in s.privileges {
            let p = crate::sql::parse_path(&path)
                .map_err(|e| format!("user {name}: privilege path {path}: {e}"))?;
            let mut bits = 0;
            for n in privs {
                let x = Privilege::from_name(&n)
                    .ok_or_else(|| format!("user {name}: unknown privilege {n}"))?;
                bits |= x.bit();
            }
            grants.push((p, bits));
        }
        Ok(User {
            password_hash: s.password_hash,
            grants,
        })
    }

    fn allowed(&self, privilege: Privilege, path: &Path) -> bool {
        self.grants
            .iter()
            .any(|(g, bits)| bits & privilege.bit() != 0 && g.covers(path))
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The user registry.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    root_password: String,
    users: Mutex<BTreeMap<String, User>>,
    failures: Mutex<HashMap<Option<IpAddr>, Failures>>,
    hashing: (Mutex<usize>, Condvar),
    /// A hash checked for unknown users, so a wrong user name costs the
    /// same time as a wrong password.
    decoy: String,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, None).expect("argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A salted argon2id hash of `password` (a PHC string).
///
/// # Errors
/// The system's random source failed.
pub fn hash_password(password: &str) -> Result<String, String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hash a password: {e}"))
}

fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        // The hash's own parameters are used.
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// Compares without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        d |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    d == 0
}

/// The throttling key of an address: IPv6 by its /64 (one host's block).
fn address_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    match ip? {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                Some(IpAddr::V6(s.into()))
            }
        },
        v4 => Some(v4),
    }
}

fn wait_after(count: u32) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES).min(16);
    (FIRST_LOGIN_WAIT * (1 << doublings)).min(MAX_LOGIN_WAIT)
}

fn check_name_and_password(name: &str, password: &str) -> Result<(), UserError> {
    let bad = |m: String| Err(uerr(status::ILLEGAL_PARAMETER, m));
    if name.chars().count() < MIN_LENGTH {
        return bad(format!(
            "Username's size must be greater than or equal to {MIN_LENGTH}"
        ));
    }
    if name.contains(' ') {
        return bad("Username cannot contain spaces".into());
    }
    if password.chars().count() < MIN_LENGTH {
        return bad(format!(
            "Password's size must be greater than or equal to {MIN_LENGTH}"
        ));
    }
    if password.contains(' ') {
        return bad("Password cannot contain spaces".into());
    }
    Ok(())
}

impl Users {
    /// Loads `dir/users.json` (none yet: only root), migrating a file of an
    /// older edgepipe (plain-text passwords) and making it mode 0600.
    ///
    /// # Errors
    /// An unreadable or damaged file, naming it.
    pub fn open(dir: &FsPath, root_password: &str) -> Result<Users, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("users.json");
        let ctx = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut migrated = false;
        let users = match std::fs::read(&path) {
            Ok(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b).map_err(|e| ctx(&e))?;
                let stored: BTreeMap<String, StoredUser> = if v.get("version").is_some() {
                    let f: StoredFile = serde_json::from_value(v).map_err(|e| ctx(&e))?;
                    if f.version != 2 {
                        return Err(ctx(&format!(
                            "version {} is newer than this edgepipe understands (2)",
                            f.version
                        )));
                    }
                    f.users
                } else {
                    migrated = true;
                    let old: BTreeMap<String, StoredUserV1> =
                        serde_json::from_value(v).map_err(|e| ctx(&e))?;
                    let mut out = BTreeMap::new();
                    for (name, u) in old {
                        let privileges = if u.privileges.is_empty() {
                            BTreeMap::new()
                        } else {
                            BTreeMap::from([("root.**".to_string(), u.privileges)])
                        };
                        out.insert(
                            name,
                            StoredUser {
                                password_hash: hash_password(&u.password)?,
                                privileges,
                            },
                        );
                    }
                    out
                };
                stored
                    .into_iter()
                    .map(|(n, s)| User::from_stored(&n, s).map(|u| (n, u)))
                    .collect::<Result<BTreeMap<_, _>, _>>()
                    .map_err(|e| ctx(&e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(ctx(&e)),
        };
        let users = Users {
            path,
            root_password: root_password.to_string(),
            users: Mutex::new(users),
            failures: Mutex::new(HashMap::new()),
            hashing: (Mutex::new(0), Condvar::new()),
            decoy: hash_password("edgepipe decoy password")?,
        };
        if migrated {
            let u = users.users.lock().expect("users lock");
            users.save(&u).map_err(|e| e.message)?;
            info!(file = %users.path.display(), users = u.len(), "users migrated: passwords are now stored as argon2id hashes, the file mode 0600");
        } else {
            users.fix_mode();
        }
        Ok(users)
    }

    /// Makes an existing file mode 0600 (files of older versions were 0644).
    fn fix_mode(&self) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&self.path) {
                if m.permissions().mode() & 0o077 != 0 {
                    match std::fs::set_permissions(
                        &self.path,
                        std::fs::Permissions::from_mode(0o600),
                    ) {
                        Ok(()) => {
                            warn!(file = %self.path.display(), "users file was readable by others; now mode 0600")
                        }
                        Err(e) => {
                            warn!(file = %self.path.display(), cause = %e, "cannot make the users file mode 0600")
                        }
                    }
                }
            }
        }
    }

    fn save(&self, users: &BTreeMap<String, User>) -> Result<(), UserError> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let io =
            |e: std::io::Error| uerr(AUTH_IO_EXCEPTION, format!("{}: {e}", self.path.display()));
        let file = StoredFile {
            version: 2,
            users: users.iter().map(|(n, u)| (n.clone(), u.stored())).collect(),
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let _ = std::fs::remove_file(&tmp);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec_pretty(&file).expect("serialize users"))
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Runs a password check in one of the [`HASHING_SLOTS`], so
    /// concurrent logins cannot make the node allocate without bound.
    fn hashing<T>(&self, f: impl FnOnce() -> T) -> T {
        let (m, cv) = &self.hashing;
        let mut busy = m.lock().expect("hashing lock");
        while *busy >= HASHING_SLOTS {
            busy = cv.wait(busy).expect("hashing lock");
        }
        *busy += 1;
        drop(busy);
        let r = f();
        *m.lock().expect("hashing lock") -= 1;
        cv.notify_one();
        r
    }

    /// Whether `name`/`password` may log in from `from` (the client's
    /// address; `None` when unknown, which shares one throttling slot).
    ///
    /// # Errors
    /// [`LoginError::Throttled`] while the address must wait (the password
    /// is not checked), else [`LoginError::Wrong`].
    pub fn login(
        &self,
        name: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<(), LoginError> {
        let key = address_key(from);
        let now = Instant::now();
        {
            let mut f = self.failures.lock().expect("failures lock");
            if let Some(e) = f.get(&key) {
                if now.duration_since(e.last) > FORGET_FAILURES {
                    f.remove(&key);
                } else {
                    let wait = wait_after(e.count);
                    let waited = now.duration_since(e.last);
                    if waited < wait {
                        return Err(LoginError::Throttled(wait - waited));
                    }
                }
            }
        }
        let ok = if name == "root" {
            same_secret(password, &self.root_password)
        } else {
            let hash = self
                .users
                .lock()
                .expect("users lock")
                .get(name)
                .map(|u| u.password_hash.clone());
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| self.decoy.clone());
            self.hashing(|| verify(password, &hash)) && known
        };
        let mut f = self.failures.lock().expect("failures lock");
        if ok {
            f.remove(&key);
            return Ok(());
        }
        if f.len() >= MAX_TRACKED_ADDRESSES && !f.contains_key(&key) {
            f.retain(|_, e| now.duration_since(e.last) <= FORGET_FAILURES);
            if f.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(oldest) = f.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) {
                    f.remove(&oldest);
                }
            }
        }
        let e = f.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        e.count = e.count.saturating_add(1);
        e.last = Instant::now();
        let count = e.count;
        drop(f);
        warn!(user = name, peer = ?from, failures = count, "failed login");
        Err(LoginError::Wrong)
    }

    /// Whether `user` may use `privilege` on every path of `paths` (an
    /// empty list means the path-independent `root.**`). Root may do
    /// everything.
    pub fn allowed(&self, user: &str, privilege: Privilege, paths: &[Path]) -> bool {
        if user == "root" {
            return true;
        }
        let users = self.users.lock().expect("users lock");
        let Some(u) = users.get(user) else {
            return false;
        };
        if paths.is_empty() {
            return u.allowed(privilege, &Path::everything());
        }
        paths.iter().all(|p| u.allowed(privilege, p))
    }

    /// Whether `user` holds `privilege` (path-independent, on `root.**`).
    pub fn has(&self, user: &str, privilege: Privilege) -> bool {
        self.allowed(user, privilege, &[])
    }

    /// Creates a user (IoTDB's rules: name and password at least 4
    /// characters, no spaces).
    ///
    /// # Errors
    /// An existing user, a bad name or password, a file that cannot be
    /// written.
    pub fn create(&self, name: &str, password: &str) -> Result<(), UserError> {
        if name == "root" {
            return Err(uerr(USER_ALREADY_EXIST, "User root already exists"));
        }
        check_name_and_password(name, password)?;
        if self.users.lock().expect("users lock").contains_key(name) {
            return Err(uerr(
                USER_ALREADY_EXIST,
                format!("User {name} already exists"),
            ));
        }
        let password_hash =
            hash_password(password).map_err(|m| uerr(status::INTERNAL_SERVER_ERROR, m))?;
        let mut u = self.users.lock().expect("users lock");
        if u.contains_key(name) {
            return Err(uerr(
                USER_ALREADY_EXIST,
                format!("User {name} already exists"),
            ));
        }
        u.insert(
            name.into(),
            User {
                password_hash,
                grants: Vec::new(),
            },
        );
        if let Err(e) = self.save(&u) {
            u.remove(name);
            return Err(e);
        }
        Ok(())
    }

    /// Drops a user.
    ///
    /// # Errors
    /// Root, an unknown user, a file that cannot be written.
    pub fn drop_user(&self, name: &str) -> Result<(), UserError> {
        if name == "root" {
            return Err(uerr(
                status::NO_PERMISSION,
                "Default administrator cannot be deleted",
            ));
        }
        let mut u = self.users.lock().expect("users lock");
        let Some(old) = u.remove(name) else {
            return Err(uerr(USER_NOT_EXIST, format!("User {name} does not exist")));
        };
        if let Err(e) = self.save(&u) {
            u.insert(name.into(), old);
            return Err(e);
        }
        Ok(())
    }

    /// Grants (or revokes) privileges on paths (none: `root.**`), as IoTDB
    /// 1.2: path-independent privileges and `ALL` only on `root.**`;
    /// granting one already held (or revoking one not held) is an error,
    /// and then nothing changes.
    ///
    /// # Errors
    /// Root, an unknown user or privilege, a path-independent privilege on
    /// another path, a privilege already held / not held.
    pub fn set(
        &self,
        name: &str,
        privileges: &[String],
        paths: &[Path],
        grant: bool,
    ) -> Result<(), UserError> {
        let mut parsed = Vec::new();
        for p in privileges {
            let x = Privilege::from_name(p)
                .ok_or_else(|| uerr(UNKNOWN_AUTH_PRIVILEGE, format!("No such privilege {p}")))?;
            parsed.push(x);
        }
        let everything = Path::everything();
        let paths: Vec<Path> = if paths.is_empty() {
            vec![everything.clone()]
        } else {
            let mut v: Vec<Path> = Vec::new();
            for p in paths {
                if !v.contains(p) {
                    v.push(p.clone());
                }
            }
            v
        };
        if !(paths.len() == 1 && paths[0] == everything) {
            if let Some(x) = parsed.iter().find(|x| !x.is_path_relevant()) {
                return Err(uerr(
                    status::SEMANTIC_ERROR,
                    format!(
                        "path independent privilege: [{}] can only be set on path: root.**",
                        x.name()
                    ),
                ));
            }
        }
        if name == "root" {
            return Err(uerr(
                status::NO_PERMISSION,
                if grant {
                    "Invalid operation, administrator already has all privileges"
                } else {
                    "Invalid operation, administrator must have all privileges"
                },
            ));
        }
        let mut users = self.users.lock().expect("users lock");
        let Some(user) = users.get_mut(name) else {
            return Err(uerr(USER_NOT_EXIST, format!("User {name} does not exist")));
        };
        let before = user.grants.clone();
        for path in &paths {
            let at = match user.grants.iter().position(|(g, _)| g == path) {
                Some(i) => i,
                None => {
                    user.grants.push((path.clone(), 0));
                    user.grants.len() - 1
                }
            };
            for &x in &parsed {
                let bits = if x == Privilege::ALL {
                    Privilege::all().fold(0, |b, y| b | y.bit())
                } else {
                    x.bit()
                };
                let held = user.grants[at].1 & x.bit() != 0;
                if grant && held {
                    user.grants = before;
                    return Err(uerr(
                        ALREADY_HAS_PRIVILEGE,
                        format!("User {name} already has {} on {path}", x.name()),
                    ));
                }
                if !grant && !held {
                    user.grants = before;
                    return Err(uerr(
                        NOT_HAS_PRIVILEGE,
                        format!("User {name} does not have {} on {path}", x.name()),
                    ));
                }
                if grant {
                    user.grants[at].1 |= bits;
                } else {
                    user.grants[at].1 &= !bits;
                }
            }
        }
        user.grants.retain(|(_, b)| *b != 0);
        if let Err(e) = self.save(&users) {
            if let Some(u) = users.get_mut(name) {
                u.grants = before;
            }
            return Err(e);
        }
        Ok(())
    }

    /// `LIST PRIVILEGES USER name [ON paths]`: for root every privilege
    /// name; for others one `path : PRIVILEGE ...` line per granted path
    /// (those the `ON` patterns cover), as IoTDB 1.2's `PathPrivilege`
    /// prints.
    ///
    /// # Errors
    /// An unknown user (804, "No such user : name").
    pub fn privileges_of(&self, name: &str, on: &[Path]) -> Result<Vec<String>, UserError> {
        if name == "root" {
            return Ok(Privilege::all().map(|p| p.name().to_string()).collect());
        }
        let users = self.users.lock().expect("users lock");
        let u = users
            .get(name)
            .ok_or_else(|| uerr(USER_NOT_EXIST, format!("No such user : {name}")))?;
        let mut rows: Vec<(String, String)> = u
            .grants
            .iter()
            .filter(|(g, _)| on.is_empty() || on.iter().any(|p| p.covers(g)))
            .map(|(g, bits)| {
                let names: Vec<&str> = Privilege::all()
                    .filter(|x| bits & x.bit() != 0)
                    .map(Privilege::name)
                    .collect();
                (g.to_string(), format!("{g} : {}", names.join(" ")))
            })
            .collect();
        rows.sort();
        Ok(rows.into_iter().map(|r| r.1).collect())
    }

    /// All user names, root first.
    pub fn list(&self) -> Vec<String> {
        std::iter::once("root".to_string())
            .chain(self.users.lock().expect("users lock").keys().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse_path;

    fn p(s: &str) -> Path {
        parse_path(s).unwrap()
    }

    #[test]
    fn the_privilege_table_is_iotdb_12s() {
        assert_eq!(Privilege::from_name("all"), Some(Privilege::ALL));
        assert_eq!(
            Privilege::from_name("set_storage_group"),
            Some(Privilege::CREATE_DATABASE)
        );
        assert_eq!(
            Privilege::from_name("SHOW_PIPES").unwrap().name(),
            "SHOW_PIPES"
        );
        assert_eq!(Privilege::from_name("DELETE_VIEW").unwrap().0, 46);
        assert_eq!(Privilege::from_name(""), None);
        assert_eq!(Privilege::all().count(), 47);
        assert!(Privilege::INSERT_TIMESERIES.is_path_relevant());
        assert!(!Privilege::CREATE_PIPE.is_path_relevant());
    }

    #[test]
    fn passwords_are_hashed_salted_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::open(dir.path(), "rootpw").unwrap();
        u.create("alice", "secret1").unwrap();
        u.create("bobby", "secret1").unwrap();
        let text = std::fs::read_to_string(dir.path().join("users.json")).unwrap();
        assert!(!text.contains("secret1"), "{text}");
        let f: StoredFile = serde_json::from_str(&text).unwrap();
        let (a, b) = (
            &f.users["alice"].password_hash,
            &f.users["bobby"].password_hash,
        );
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "the same password hashes differently (salt)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.path().join("users.json")).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(u.login("alice", "secret1", None), Ok(()));
        assert_eq!(u.login("alice", "secret2", None), Err(LoginError::Wrong));
        assert_eq!(u.login("nobody", "secret1", None), Err(LoginError::Wrong));
        assert_eq!(u.login("root", "rootpw", None), Ok(()));
        // Reopened: the hash still verifies.
        drop(u);
        let u = Users::open(dir.path(), "rootpw").unwrap();
        assert_eq!(u.login("alice", "secret1", None), Ok(()));
        assert_eq!(
            u.create("bob", "secret1").unwrap_err().message,
            "Username's size must be greater than or equal to 4"
        );
        assert_eq!(
            u.create("carol", "a b c").unwrap_err().message,
            "Password cannot contain spaces"
        );
        assert_eq!(u.create("alice", "secret1").unwrap_err().code, 805);
    }

    #[test]
    fn an_old_plain_text_file_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.json");
        std::fs::write(
            &file,
            r#"{"alice":{"password":"alice123","privileges":["CREATE_PIPE","SHOW_PIPES"]},"bobby":{"password":"bobby123","privileges":[]}}"#,
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let u = Users::open(dir.path(), "root").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("alice123") && !text.contains("bobby123"),
            "{text}"
        );
        assert!(text.contains("\"version\": 2"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&file).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(u.login("alice", "alice123", None), Ok(()));
        assert_eq!(u.login("bobby", "bobby123", None), Ok(()));
        assert!(u.has("alice", Privilege::CREATE_PIPE));
        assert!(u.has("alice", Privilege::SHOW_PIPES));
        assert!(!u.has("alice", Privilege::DROP_PIPE));
        assert!(!u.has("bobby", Privilege::CREATE_PIPE));
        // The migrated file opens as version 2.
        drop(u);
        let u = Users::open(dir.path(), "root").unwrap();
        assert_eq!(u.login("alice", "alice123", None), Ok(()));
    }

    #[test]
    fn a_0644_file_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::open(dir.path(), "root").unwrap();
        u.create("alice", "alice123").unwrap();
        drop(u);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.path().join("users.json");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            Users::open(dir.path(), "root").unwrap();
            let m = std::fs::metadata(&file).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::open(dir.path(), "rootpw").unwrap();
        let a: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let b: Option<IpAddr> = Some("127.0.0.2".parse().unwrap());
        for _ in 0..FREE_FAILURES {
            assert_eq!(u.login("root", "guess", a), Err(LoginError::Wrong));
        }
        // Now address a must wait, even with the right password.
        let Err(LoginError::Throttled(w)) = u.login("root", "rootpw", a) else {
            panic!("not throttled");
        };
        assert!(
            w > Duration::from_millis(500) && w <= FIRST_LOGIN_WAIT,
            "{w:?}"
        );
        // Another address is not slowed.
        assert_eq!(u.login("root", "rootpw", b), Ok(()));
        // IPv6 addresses of one /64 share a slot.
        assert_eq!(
            address_key(Some("2001:db8::1".parse().unwrap())),
            address_key(Some("2001:db8::ffff:1".parse().unwrap()))
        );
        assert_eq!(wait_after(FREE_FAILURES + 1), FIRST_LOGIN_WAIT * 2);
        assert_eq!(wait_after(1000), MAX_LOGIN_WAIT);
    }

    #[test]
    fn grants_are_path_scoped_as_in_iotdb() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::open(dir.path(), "root").unwrap();
        u.create("alice", "alice123").unwrap();
        let ins = Privilege::INSERT_TIMESERIES;
        assert!(!u.allowed("alice", ins, &[p("root.sg.d.s")]));
        assert!(u.allowed("root", ins, &[p("root.sg.d.s")]));
        u.set(
            "alice",
            &["INSERT_TIMESERIES".into()],
            &[p("root.sg.**")],
            true,
        )
        .unwrap();
        assert!(u.allowed("alice", ins, &[p("root.sg.d.s")]));
        assert!(!u.allowed("alice", ins, &[p("root.other.d.s")]));
        assert!(!u.allowed("alice", ins, &[p("root.sg.d.s"), p("root.x.d.s")]));
        // A pattern in a statement must be covered as written.
        assert!(u.allowed("alice", ins, &[p("root.sg.**")]));
        assert!(!u.allowed("alice", ins, &[p("root.**")]));
        // Twice is IoTDB's ALREADY_HAS_PRIVILEGE; nothing changes.
        let e = u
            .set(
                "alice",
                &["INSERT_TIMESERIES".into()],
                &[p("root.sg.**")],
                true,
            )
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                810,
                "User alice already has INSERT_TIMESERIES on root.sg.**"
            )
        );
        let e = u
            .set("alice", &["CREATE_PIPE".into()], &[p("root.sg.**")], true)
            .unwrap_err();
        assert_eq!(
            e.message,
            "path independent privilege: [CREATE_PIPE] can only be set on path: root.**"
        );
        assert_eq!(
            u.set("alice", &["NOPE".into()], &[], true)
                .unwrap_err()
                .code,
            813
        );
        assert_eq!(
            u.privileges_of("alice", &[]).unwrap(),
            ["root.sg.** : INSERT_TIMESERIES"]
        );
        u.set(
            "alice",
            &["CREATE_PIPE".into(), "READ_TIMESERIES".into()],
            &[],
            true,
        )
        .unwrap();
        assert!(u.has("alice", Privilege::CREATE_PIPE));
        assert!(u.allowed("alice", Privilege::READ_TIMESERIES, &[p("root.**")]));
        assert_eq!(
            u.privileges_of("alice", &[]).unwrap(),
            [
                "root.** : READ_TIMESERIES CREATE_PIPE",
                "root.sg.** : INSERT_TIMESERIES"
            ]
        );
        assert_eq!(
            u.privileges_of("alice", &[p("root.sg.**")]).unwrap(),
            ["root.sg.** : INSERT_TIMESERIES"]
        );
        u.set(
            "alice",
            &["INSERT_TIMESERIES".into()],
            &[p("root.sg.**")],
            false,
        )
        .unwrap();
        assert!(!u.allowed("alice", ins, &[p("root.sg.d.s")]));
        assert_eq!(
            u.set(
                "alice",
                &["INSERT_TIMESERIES".into()],
                &[p("root.sg.**")],
                false
            )
            .unwrap_err()
            .code,
            811
        );
        // Survives a reopen.
        drop(u);
        let u = Users::open(dir.path(), "root").unwrap();
        assert!(u.has("alice", Privilege::CREATE_PIPE));
        assert_eq!(u.privileges_of("alice", &[]).unwrap().len(), 1);
        u.set("alice", &["ALL".into()], &[], true).unwrap();
        assert!(u.has("alice", Privilege::DROP_PIPE));
        assert!(u.allowed("alice", ins, &[p("root.any.d.s")]));
        u.set("alice", &["ALL".into()], &[], false).unwrap();
        assert!(u.privileges_of("alice", &[]).unwrap().is_empty());
        assert_eq!(
            u.set("alice", &["ALL".into()], &[], false)
                .unwrap_err()
                .code,
            811
        );
        assert!(u
            .privileges_of("root", &[])
            .unwrap()
            .contains(&"ALL".to_string()));
        assert_eq!(
            u.set("root", &["ALL".into()], &[], true).unwrap_err().code,
            803
        );
    }
}
