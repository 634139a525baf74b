//! The way a command's outcome becomes the process's exit status.

use std::fmt::Display;
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
