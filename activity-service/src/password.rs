//! Password hashing with argon2id. Hashing is deliberately slow and takes
//! about 19 MiB per check, so sign-in checks go through `PasswordChecks`: a
//! fixed set of threads of their own (never stalling the threads serving
//! pings), one check each at a time, with a bounded number of sign-ins
//! waiting for their turn, each for a bounded time. A flood of sign-ins gets
//! RESOURCE_EXHAUSTED answers instead of exhausting the process's memory.
//!
//! Each thread keeps its argon2 memory and reuses it for every check, so the
//! memory of password checks is exactly one check's worth per thread,
//! whatever the load. (Allocating it per check on tokio's blocking pool left
//! it to the allocator, which kept freed blocks per thread, and that pool
//! starts new threads under load: memory grew with the flood.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use parking_lot::Mutex;
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::ActivityError;

/// A valid argon2id hash of a random password: verifying against it when the
/// username is unknown costs the same time as a real check, so response time
/// does not reveal which usernames exist.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4B/3VKsIC+b0VCMhiAyYxbxoT3aH3S5fBiSsBDhkeQg";
/// A stored hash asking for more memory than this (KiB) is refused rather
/// than checked: checks must fit the process's memory.
const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// Hashes a new password (account creation, not sign-in: no bound needed).
pub async fn hash(password: String) -> Result<String, ActivityError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| ActivityError::Internal(format!("hashing failed: {error}")))
    })
    .await
    .map_err(|error| ActivityError::Internal(error.to_string()))?
}

/// The bound on password checks: at most `concurrency` run at once (about one
/// per core: more would only share the same cores and multiply the memory),
/// at most `queue` more wait for their turn, each for at most `max_wait`.
#[derive(Clone, Debug)]
pub struct PasswordChecks {
    /// Checks running or waiting; a check that finds none free is refused at once.
    admitted: Arc<Semaphore>,
    /// Checks running: as many permits as there are threads.
    running: Arc<Semaphore>,
    max_wait: Duration,
    jobs: mpsc::Sender<Job>,
}

/// A place among the admitted checks, held until the check has finished.
#[derive(Debug)]
pub struct Admission {
    admitted: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
    max_wait: Duration,
    jobs: mpsc::Sender<Job>,
}

/// One check for a thread, with the places it holds: they are given back
/// when the thread is done with it, even if the caller went away meanwhile.
struct Job {
    password: String,
    stored_hash: Option<String>,
    answer: oneshot::Sender<Result<bool, ActivityError>>,
    _places: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl PasswordChecks {
    /// Starts `concurrency` threads, which end when the last clone is dropped.
    pub fn new(concurrency: usize, queue: usize, max_wait: Duration) -> Self {
        let (jobs, waiting) = mpsc::channel::<Job>();
        let waiting = Arc::new(Mutex::new(waiting));
        for number in 0..concurrency {
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{number}"))
                .spawn(move || run_checks(&waiting))
                .expect("a password check thread starts");
        }
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            running: Arc::new(Semaphore::new(concurrency)),
            max_wait,
            jobs,
        }
    }

    /// A place for one check, or `Busy` when every place is taken.
    pub fn admit(&self) -> Result<Admission, ActivityError> {
        let admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| ActivityError::Busy)?;
        Ok(Admission {
            admitted,
            running: self.running.clone(),
            max_wait: self.max_wait,
            jobs: self.jobs.clone(),
        })
    }
}

/// A check thread: one job after another until the sender is gone. Holding
/// a `running` permit, a job always finds a thread free (or about to be).
fn run_checks(waiting: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        let next = waiting.lock().recv();
        let Ok(job) = next else { return };
        if job.answer.is_closed() {
            continue;
        }
        let Job {
            password,
            stored_hash,
            answer,
            _places,
        } = job;
        let checked = catch_unwind(AssertUnwindSafe(|| {
            check(&mut memory, &password, stored_hash)
        }))
        .unwrap_or_else(|_| Err(ActivityError::Internal("password check panicked".into())));
        let _ = answer.send(checked);
    }
}

impl Admission {
    /// True when `password` matches `stored_hash`; with no hash (unknown user)
    /// it checks against a decoy and returns false. `Busy` when no thread
    /// frees up within the wait.
    pub async fn verify(
        self,
        password: String,
        stored_hash: Option<String>,
    ) -> Result<bool, ActivityError> {
        let running = tokio::time::timeout(self.max_wait, self.running.acquire_owned())
            .await
            .map_err(|_| ActivityError::Busy)?
            .map_err(|_| ActivityError::Internal("password checks closed".into()))?;
        let (answer, answered) = oneshot::channel();
        let job = Job {
            password,
            stored_hash,
            answer,
            _places: (self.admitted, running),
        };
        self.jobs
            .send(job)
            .map_err(|_| ActivityError::Internal("password check threads gone".into()))?;
        answered
            .await
            .map_err(|_| ActivityError::Internal("password check lost".into()))?
    }
}

/// What `PasswordVerifier::verify_password` does, but in `memory` (grown to
/// the hash's cost on first use, then reused) instead of a fresh allocation.
/// The comparison of `Output`s is constant-time.
fn check(
    memory: &mut Vec<Block>,
    password: &str,
    stored_hash: Option<String>,
) -> Result<bool, ActivityError> {
    let unreadable = |error: &dyn std::fmt::Display| {
        ActivityError::Internal(format!("stored hash unreadable: {error}"))
    };
    let known = stored_hash.is_some();
    let hash_text = stored_hash.unwrap_or_else(|| DECOY_HASH.to_owned());
    let parsed = PasswordHash::new(&hash_text).map_err(|error| unreadable(&error))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(unreadable(&"no salt or no hash"));
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|error| unreadable(&error))?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version).map_err(|error| unreadable(&error))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|error| unreadable(&error))?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(unreadable(&format_args!("needs {} KiB", params.m_cost())));
    }
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|error| unreadable(&error))?;
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
            .map_err(Into::into)
    })
    .map_err(|error| unreadable(&error))?;
    Ok(known && computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> PasswordChecks {
        PasswordChecks::new(1, 1, Duration::from_secs(30))
    }

    async fn verify(password: &str, stored: Option<String>) -> bool {
        checks()
            .admit()
            .unwrap()
            .verify(password.into(), stored)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("Test1234!".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("Test1234!", Some(stored.clone())).await);
        assert!(!verify("test1234!", Some(stored)).await);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify("anything", None).await);
    }

    #[tokio::test]
    async fn a_check_agrees_with_the_crates_verifier_when_its_memory_is_reused() {
        use argon2::password_hash::PasswordVerifier;
        let stored = hash("Test1234!".into()).await.unwrap();
        let parsed = PasswordHash::new(&stored).unwrap();
        let mut memory = Vec::new();
        for password in ["Test1234!", "wrong", "Test1234!", "", "Test1234!x"] {
            let crate_says = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            let we_say = check(&mut memory, password, Some(stored.clone())).unwrap();
            assert_eq!(we_say, crate_says, "{password:?}");
        }
    }

    #[test]
    fn a_hash_asking_for_too_much_memory_is_refused_unchecked() {
        let greedy = DECOY_HASH.replace("m=19456", "m=4194304");
        let refused = check(&mut Vec::new(), "x", Some(greedy));
        assert!(
            matches!(refused, Err(ActivityError::Internal(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn checks_beyond_the_running_and_waiting_ones_are_refused_at_once() {
        let checks = PasswordChecks::new(1, 1, Duration::from_secs(30));
        let running = checks.admit().unwrap();
        let waiting = checks.admit().unwrap();

        assert!(matches!(checks.admit(), Err(ActivityError::Busy)));
        drop((running, waiting));
        assert!(checks.admit().is_ok());
    }

    #[tokio::test]
    async fn a_check_that_waits_too_long_for_its_turn_is_refused() {
        let checks = PasswordChecks::new(1, 1, Duration::from_millis(50));
        let _busy = checks.running.clone().acquire_owned().await.unwrap();

        let waited = checks.admit().unwrap().verify("x".into(), None).await;

        assert!(matches!(waited, Err(ActivityError::Busy)), "{waited:?}");
    }
}
