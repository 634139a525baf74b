//! The way a command's outcome becomes the process's exit status.

use std::fmt::{self, Display};
use std::process::ExitCode;

/// Success, or the error on standard error behind the program's name and a failure status.
pub fn exit_code(program: &str, outcome: Result<(), impl Display>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// An error and each of its causes, one a line (`caused by: ...`), as the
/// process prints it before exiting with a failure.
#[derive(Debug)]
pub struct Report<E>(pub E);

impl<E: std::error::Error> fmt::Display for Report<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            // Some messages end with their source's ("database error: {0}"): said once.
            if !shown.ends_with(&text) {
                write!(f, "\n  caused by: {text}")?;
            }
            shown = text;
            cause = error.source();
        }
        Ok(())
    }
}
