//! The `dfa` command line: argument parsing ([`args`], the only place clap is used), what is
//! printed ([`console`]) and one thin function per subcommand ([`commands`]) around the library
//! call that does the work.

mod args;
mod commands;
mod console;

use args::{Cli, Command, DataCommand};
use clap::Parser;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use dfa::base::choice::Choice;
use dfa::rules::Rule;
use std::process::ExitCode;

/// `--rule` and its kin: every registered rule, with its one-line description in `--help`.
fn rule_parser() -> impl TypedValueParser<Value = Rule> {
    let values = Rule::all().iter().map(|r| PossibleValue::new(r.name()).help(r.about()));
    PossibleValuesParser::new(values).try_map(|name| name.parse::<Rule>())
}

/// A flag that takes one of the names of a library enumeration ([`Choice`]), each with its help.
fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::CHOICES.iter().map(|c| {
        let value = PossibleValue::new(c.name);
        if c.help.is_empty() { value } else { value.help(c.help) }
    });
    PossibleValuesParser::new(values).try_map(|name| T::from_name(&name).ok_or(format!("unknown value '{name}'")))
}

/// Parses the arguments, runs the subcommand and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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
