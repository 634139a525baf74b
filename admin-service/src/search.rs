//! The query of a user listing: whitespace-separated words, each of which
//! must start a word of the username or of the display name, ignoring case
//! and accents. Parsing here bounds and cleans what the client sent; the
//! matching itself is PostgreSQL's (`Directory::page`), on the folded
//! `users.search_text` column, so the same folding (`presence_fold`) applies
//! to the names and to the words, and the trigram index can serve it.

use crate::error::AdminError;

/// The longest query accepted, in characters (not bytes).
pub const MAX_QUERY_CHARS: usize = 100;

/// A parsed query; empty means every user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchQuery {
    words: Vec<String>,
}

impl SearchQuery {
    /// Checks and splits `text`: at most `MAX_QUERY_CHARS` characters, no
    /// control character; empty or blank is no filter.
    pub fn parse(text: &str) -> Result<Self, AdminError> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(AdminError::InvalidArgument(format!(
                "query must be at most {MAX_QUERY_CHARS} characters"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(AdminError::InvalidArgument(
                "query must not contain control characters (tab, newline, ...)".into(),
            ));
        }
        Ok(Self {
            words: text.split_whitespace().map(str::to_owned).collect(),
        })
    }

    /// The words, each to be found at the start of a word of the names.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words joined by single spaces: what a page token is bound to, so
    /// spacing alone does not make another query. At most as long (in bytes)
    /// as the text parsed.
    pub fn normalised(&self) -> String {
        self.words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_on_any_whitespace() {
        let query = SearchQuery::parse("  elo \u{a0} dur ").unwrap();
        assert_eq!(query.words(), ["elo", "dur"]);
        assert_eq!(query.normalised(), "elo dur");
    }

    #[test]
    fn blank_is_no_filter() {
        for text in ["", "   ", "\u{3000}"] {
            assert!(SearchQuery::parse(text).unwrap().is_empty(), "{text:?}");
        }
    }

    #[test]
    fn the_length_is_counted_in_characters() {
        let longest = "é".repeat(MAX_QUERY_CHARS);
        assert_eq!(SearchQuery::parse(&longest).unwrap().words().len(), 1);
        assert!(matches!(
            SearchQuery::parse(&format!("{longest}e")),
            Err(AdminError::InvalidArgument(_))
        ));
    }

    #[test]
    fn control_characters_are_refused() {
        for text in ["a\u{0}", "a\tb", "a\nb", "\u{1b}[31m", "a\u{7f}", "a\u{85}"] {
            assert!(
                matches!(
                    SearchQuery::parse(text),
                    Err(AdminError::InvalidArgument(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn metacharacters_are_kept_as_typed() {
        let query = SearchQuery::parse("% _ \\ .* (").unwrap();
        assert_eq!(query.words(), ["%", "_", "\\", ".*", "("]);
    }
}
