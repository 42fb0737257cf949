//! Command-line parsing of the core's vocabulary (feature `clap`): one
//! parser per type, so that every command spells groups and compliance
//! choices the same way as the TOML file.
//!
//! Each parser is the type's own `FromStr` (which folds case and accepts
//! the aliases: `prime256v1`, `secp256r1`, `require_hybrid`, ...) plus the
//! canonical names and their descriptions for `--help`. A derived
//! `clap::ValueEnum` would match only the listed names, exactly, so it
//! would lose the folding the TOML file has; `value_parser!` picks these
//! up through [`ValueParserFactory`].

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::str::FromStr;

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser, ValueParserFactory};

use crate::compliance::{ClassicalChoice, PostQuantumChoice};
use crate::config::Implementation;
use crate::kx::KeyExchange;

/// A type with a `FromStr` and a list of names to show in `--help`.
pub trait Vocabulary: FromStr + Clone + Send + Sync + 'static {
    /// The canonical names, with their descriptions and accepted aliases.
    fn possible_values() -> Vec<PossibleValue>;
}

/// The clap value parser of a [`Vocabulary`] type.
pub struct VocabularyParser<T>(PhantomData<fn() -> T>);

impl<T> Clone for VocabularyParser<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for VocabularyParser<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> TypedValueParser for VocabularyParser<T>
where
    T: Vocabulary,
    <T as FromStr>::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        // clap's own FromStr path, so the message has clap's form:
        // invalid value 'x' for '--flag <V>': <our error, listing valid names>.
        StringValueParser::new()
            .try_map(|text| text.parse::<T>())
            .parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(T::possible_values().into_iter()))
    }
}

impl Vocabulary for KeyExchange {
    fn possible_values() -> Vec<PossibleValue> {
        KeyExchange::ALL
            .into_iter()
            .map(|kx| {
                let value = PossibleValue::new(kx.name()).help(kx.description());
                match kx {
                    KeyExchange::P256 => value.aliases(["prime256v1", "secp256r1"]),
                    KeyExchange::P384 => value.alias("secp384r1"),
                    _ => value,
                }
            })
            .collect()
    }
}

impl Vocabulary for ClassicalChoice {
    fn possible_values() -> Vec<PossibleValue> {
        vec![
            PossibleValue::new("allow").help("Classical groups may be offered"),
            PossibleValue::new("forbid").help("Only hybrid or post-quantum groups"),
        ]
    }
}

impl Vocabulary for PostQuantumChoice {
    fn possible_values() -> Vec<PossibleValue> {
        vec![
            PossibleValue::new("allow").help("No requirement"),
            PossibleValue::new("require-hybrid")
                .alias("require_hybrid")
                .help("Every group hybrid (classical + ML-KEM)"),
            PossibleValue::new("require-pure")
                .alias("require_pure")
                .help("Every group pure ML-KEM"),
        ]
    }
}

impl Vocabulary for Implementation {
    fn possible_values() -> Vec<PossibleValue> {
        vec![
            PossibleValue::new("rustls").help("rustls with aws-lc-rs (the default)"),
            PossibleValue::new("openssl").help("OpenSSL 3.6, built in from source"),
        ]
    }
}

macro_rules! factory {
    ($($ty:ty),*) => {$(
        impl ValueParserFactory for $ty {
            type Parser = VocabularyParser<$ty>;
            fn value_parser() -> Self::Parser {
                VocabularyParser::default()
            }
        }
    )*};
}

factory!(
    KeyExchange,
    ClassicalChoice,
    PostQuantumChoice,
    Implementation
);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Flags {
        #[arg(long, value_delimiter = ',')]
        groups: Vec<KeyExchange>,
        #[arg(long)]
        classical: Option<ClassicalChoice>,
        #[arg(long = "post-quantum")]
        post_quantum: Option<PostQuantumChoice>,
    }

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        clap::Parser::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
    }

    #[test]
    fn every_spelling_parses_as_from_str_does() -> Result<(), clap::Error> {
        let flags = parse(&[
            "--groups",
            "x25519mlkem768,prime256v1,secp256r1,secp384r1, P-384",
            "--classical",
            "Forbid",
            "--post-quantum",
            "require_hybrid",
        ])?;
        use KeyExchange::*;
        assert_eq!(flags.groups, [X25519MlKem768, P256, P256, P384, P384]);
        assert_eq!(flags.classical, Some(ClassicalChoice::Forbid));
        assert_eq!(flags.post_quantum, Some(PostQuantumChoice::RequireHybrid));
        let flags = parse(&["--post-quantum", "require-pure"])?;
        assert_eq!(flags.post_quantum, Some(PostQuantumChoice::RequirePure));
        Ok(())
    }

    #[test]
    fn a_bad_value_names_the_flag_and_the_valid_values() {
        let err = parse(&["--groups", "X25519,kyber"])
            .unwrap_err()
            .to_string();
        for expected in ["--groups", "\"kyber\"", "X25519MLKEM768", "P-384"] {
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let err = parse(&["--post-quantum", "hybrid"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("require-hybrid"), "{err}");
        assert!(parse(&["--classical", "deny"]).is_err());
    }

    #[test]
    fn help_lists_the_canonical_names_with_descriptions() {
        let help = <Flags as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for name in [
            "X25519MLKEM768",
            "P-384",
            "require-hybrid",
            "forbid",
            "Every group pure ML-KEM",
        ] {
            assert!(help.contains(name), "{name}:\n{help}");
        }
        // Aliases are accepted, not listed as values of their own.
        assert!(!help.contains("- prime256v1"), "{help}");
        assert!(!help.contains("- require_hybrid"), "{help}");
    }
}
