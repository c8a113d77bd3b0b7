//! Environment names of the command-line options, shared by `vidinfer-worker` and
//! `gifgen`.
//!
//! Every option reads `VIDINFER_` + its flag in upper case (`--fps` → `VIDINFER_FPS`,
//! `--frame-interval` → `VIDINFER_FRAME_INTERVAL`). Older names stay accepted as
//! aliases: the legacy system's `FRAME_INTERVAL`, `FRAME_WIDTH`, `FRAME_HEIGHT` and
//! `BATCH_SIZE`, vidinfer's earlier names, and AWS's own `AWS_REGION` and
//! `AWS_ENDPOINT_URL`. An alias is read only when the `VIDINFER_` name is unset, and a
//! flag typed on the command line beats both.

use clap::Command;

/// `(name, alias)`: the alias is read when the name is not set.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("VIDINFER_BATCH_SIZE", "BATCH_SIZE"),
    ("VIDINFER_FRAME_INTERVAL", "FRAME_INTERVAL"),
    ("VIDINFER_FRAME_WIDTH", "FRAME_WIDTH"),
    ("VIDINFER_FRAME_HEIGHT", "FRAME_HEIGHT"),
    ("VIDINFER_FPS", "VIDINFER_SAMPLE_FPS"),
    ("VIDINFER_FORMAT", "VIDINFER_OUTPUT_FORMAT"),
    ("VIDINFER_OUTPUT_PATH", "VIDINFER_S3_OUTPUT_PATH"),
    ("VIDINFER_FAILURE_PATH", "VIDINFER_S3_FAILURE_PATH"),
    ("VIDINFER_REGION", "AWS_REGION"),
    ("VIDINFER_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
];

/// The alias to read instead of `name`: when `name` is unset and its alias is set.
pub fn alias_in_use(name: &str, is_set: impl Fn(&str) -> bool) -> Option<&'static str> {
    let (_, alias) = ENV_ALIASES.iter().find(|(n, _)| *n == name)?;
    (!is_set(name) && is_set(alias)).then_some(*alias)
}

/// `cmd` (and its subcommands) with each option whose `VIDINFER_` name is unset but
/// whose alias is set reading the alias instead. Call before parsing.
pub fn with_env_aliases(cmd: Command) -> Command {
    with_env_aliases_from(cmd, &|k| std::env::var_os(k).is_some())
}

fn with_env_aliases_from(mut cmd: Command, is_set: &dyn Fn(&str) -> bool) -> Command {
    let swaps: Vec<(String, &'static str)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_str()?;
            Some((a.get_id().to_string(), alias_in_use(name, is_set)?))
        })
        .collect();
    for (id, alias) in swaps {
        cmd = cmd.mut_arg(id, |a| a.env(alias));
    }
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |s| with_env_aliases_from(s, is_set));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cli() -> Command {
        Command::new("t").subcommand(
            Command::new("run")
                .arg(
                    Arg::new("frame_interval")
                        .long("frame-interval")
                        .env("VIDINFER_FRAME_INTERVAL"),
                )
                .arg(Arg::new("model").long("model").env("VIDINFER_MODEL")),
        )
    }

    /// The environment variable `run --frame-interval` reads, given what is set.
    fn reads(env: &[&str]) -> String {
        let cmd = with_env_aliases_from(cli(), &|k| env.contains(&k));
        let run = cmd.find_subcommand("run").unwrap();
        let arg = run.get_arguments().find(|a| a.get_id() == "frame_interval");
        arg.unwrap()
            .get_env()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_alias_is_read_only_when_the_vidinfer_name_is_unset() {
        assert_eq!(reads(&[]), "VIDINFER_FRAME_INTERVAL");
        assert_eq!(reads(&["FRAME_INTERVAL"]), "FRAME_INTERVAL");
        assert_eq!(
            reads(&["FRAME_INTERVAL", "VIDINFER_FRAME_INTERVAL"]),
            "VIDINFER_FRAME_INTERVAL"
        );
        // Options without an alias are untouched.
        assert_eq!(alias_in_use("VIDINFER_MODEL", |_| true), None);
    }

    #[test]
    fn every_alias_names_a_vidinfer_option() {
        for (name, alias) in ENV_ALIASES {
            assert!(name.starts_with("VIDINFER_"), "{name}");
            assert_ne!(name, alias);
        }
    }
}
