//! Cache configuration: Django's `TIMEOUT`, `KEY_PREFIX`, `VERSION`, `KEY_FUNCTION`, and the
//! key policy. Built with `const fn`s so a cache can live in a `static`.
//!
//! `MAX_ENTRIES` and `CULL_FREQUENCY` belong to the memory table, which enforces them:
//! see [`Table::with_culling`](crate::Table::with_culling).

use crate::key::{KeyFn, KeyPolicy};
use crate::timeout::Timeout;

/// How a cache makes keys and what its default timeout is.
///
/// ```
/// use tickcache::{Config, KeyPolicy, Timeout};
/// const CONFIG: Config = Config::new()
///     .timeout(Timeout::Secs(60))
///     .key_prefix("site")
///     .version(2)
///     .key_policy(KeyPolicy::Lenient);
/// assert_eq!(CONFIG.default_version(), 2);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub(crate) timeout: Timeout,
    pub(crate) prefix: &'static str,
    /// `prefix:version:` for the default version, when it fits and the prefix holds no
    /// byte memcached refuses.
    pub(crate) head: crate::key::Head,
    pub(crate) version: i32,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) policy: KeyPolicy,
    /// The general path of key making: the default key function's under a silent policy,
    /// [`KeyPolicy::Warn`]'s, or a custom key function's. A pointer set by the builder
    /// calls, so a firmware that asks for neither of the last two links none of their code.
    pub(crate) general: crate::key::General,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    /// Django's defaults: timeout 300 s, prefix `""`, version 1, `prefix:version:key`,
    /// strict (memcached) key validation.
    pub const fn new() -> Self {
        Config {
            timeout: Timeout::DJANGO_DEFAULT,
            prefix: "",
            // Evaluated at compile time: built at run time, the head cost a `memcpy` call.
            head: const { crate::key::Head::new("", 1) },
            version: 1,
            key_fn: None,
            policy: KeyPolicy::Strict,
            general: crate::key::make_default,
        }
    }

    /// The default timeout (Django's `TIMEOUT`); `Timeout::Never` is Django's `None`.
    /// `Timeout::Default` here means Django's 300 s.
    pub const fn timeout(mut self, timeout: Timeout) -> Self {
        self.timeout = match timeout {
            Timeout::Default => Timeout::DJANGO_DEFAULT,
            t => t,
        };
        self
    }

    /// The key prefix (Django's `KEY_PREFIX`).
    pub const fn key_prefix(mut self, prefix: &'static str) -> Self {
        self.prefix = prefix;
        self.with_head()
    }

    /// The default version (Django's `VERSION`).
    pub const fn version(mut self, version: i32) -> Self {
        self.version = version;
        self.with_head()
    }

    /// A custom key function (Django's `KEY_FUNCTION`).
    pub const fn key_function(mut self, key_fn: KeyFn) -> Self {
        self.key_fn = Some(key_fn);
        self.with_general().with_head()
    }

    /// What a key that breaks memcached's rules gets: an error ([`KeyPolicy::Strict`], the
    /// default), nothing ([`KeyPolicy::Lenient`]) or a call of a hook
    /// ([`KeyPolicy::Warn`], Django's `CacheKeyWarning`).
    pub const fn key_policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self.with_general().with_head()
    }

    /// The general path of key making for the policy and the key function.
    const fn with_general(mut self) -> Self {
        self.general = match (self.policy, self.key_fn) {
            (KeyPolicy::Warn(_), _) => crate::key::warn,
            (_, Some(_)) => crate::key::make_custom,
            (_, None) => crate::key::make_default,
        };
        self
    }

    /// The prebuilt head for the prefix and version; none under the warning policy, whose
    /// keys all take the path that calls the hook, nor with a custom key function.
    const fn with_head(mut self) -> Self {
        self.head = match (self.policy, self.key_fn) {
            (KeyPolicy::Warn(_), _) | (_, Some(_)) => crate::key::Head::NONE,
            _ => crate::key::Head::new(self.prefix, self.version),
        };
        self
    }

    /// The configured default timeout.
    pub const fn default_timeout(&self) -> Timeout {
        self.timeout
    }

    /// The configured key prefix.
    pub const fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// The configured default version.
    pub const fn default_version(&self) -> i32 {
        self.version
    }

    /// The configured key policy.
    pub const fn policy(&self) -> KeyPolicy {
        self.policy
    }
}
