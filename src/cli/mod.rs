//! The `dfa` command line: argument parsing ([`args`], the only place clap is used), what is
//! printed ([`console`]) and one thin function per subcommand ([`commands`]) around the library
//! call that does the work.

mod args;
mod commands;
mod console;

use args::{Cli, Command, DataCommand};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use dfa::base::choice::Choice;
use dfa::rules::Rule;
use std::process::ExitCode;

/// `--rule` and its kin: every registered rule, with its one-line description in `--help`.
fn rule_parser() -> impl TypedValueParser<Value = Rule> {
    let values = Rule::all().iter().map(|r| PossibleValue::new(r.name()).help(r.about()));
    PossibleValuesParser::new(values).try_map(|name| name.parse::<Rule>())
}

/// A thread count: 0 (all cores) up to four threads per core of this machine; more only
/// slows a run down (each step waits for its slowest thread), so it is refused as a mistake.
fn thread_count(text: &str) -> Result<usize, String> {
    let n: usize = text.trim().parse().map_err(|_| format!("'{text}' is not a whole number of threads"))?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let most = (4 * cores).max(4);
    if n > most {
        return Err(format!("{n} threads on a machine with {cores} cores; expected 0 (all cores) to {most}"));
    }
    Ok(n)
}

/// A flag that takes one of the names of a library enumeration ([`Choice`]), each with its help.
fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::CHOICES.iter().map(|c| {
        let value = PossibleValue::new(c.name);
        if c.help.is_empty() { value } else { value.help(c.help) }
    });
    PossibleValuesParser::new(values).try_map(|name| T::from_name(&name).ok_or(format!("unknown value '{name}'")))
}

/// `dfa train --resume RUN` takes no flag that would change the run (the folder's config.toml
/// decides; before, such flags were ignored without a word).
fn resume_alone(command: &clap::Command, train: &ArgMatches) -> Result<(), String> {
    if train.value_source("resume") != Some(ValueSource::CommandLine) {
        return Ok(());
    }
    // arguments only: the ids of argument groups (a flattened struct's name) are not flags
    let arguments: Vec<&str> = command
        .find_subcommand("train")
        .map(|train| train.get_arguments().map(|a| a.get_id().as_str()).collect())
        .unwrap_or_default();
    let given: Vec<String> = train
        .ids()
        .map(|id| id.as_str())
        .filter(|id| arguments.contains(id))
        .filter(|id| !["resume", "data_dir", "accept_changes"].contains(id))
        .filter(|id| train.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} cannot be given with --resume: a resumed run keeps the configuration in its config.toml (only --data-dir and --accept-changes apply)",
        given.join(", ")
    ))
}

/// Parses the arguments, runs the subcommand and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let command = Cli::command();
    let matches = command.clone().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(("train", train)) = matches.subcommand()
        && let Err(message) = resume_alone(&command, train)
    {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Train(args) => commands::train(*args),
        Command::Eval(args) => commands::eval(args),
        Command::Bench(args) => commands::bench(args),
        Command::Reproduce(args) => commands::reproduce(args),
        Command::Plot(args) => commands::plot(args),
        Command::Features(args) => commands::features(args),
        Command::Tsne(args) => commands::tsne(args),
        Command::Data { command: DataCommand::Download(args) } => commands::data_download(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
