//! Tokens of a framed line: atoms (with any `[…]` section, spaces and
//! parentheses included, as in `BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>`),
//! quoted strings, literals (by the framer's marks), parentheses.

use super::frame::LiteralMark;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Atom(&'a [u8]),
    /// A quoted string, escapes removed.
    Quoted(Vec<u8>),
    Literal(u64),
    Open,
    Close,
}

/// The line could not be tokenised (an unterminated quoted string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unterminated;

pub(crate) struct Lexer<'a> {
    text: &'a [u8],
    position: usize,
    literals: &'a [LiteralMark],
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a [u8], literals: &'a [LiteralMark]) -> Self {
        Self {
            text,
            position: 0,
            literals,
        }
    }

    pub fn literals(&self) -> &'a [LiteralMark] {
        self.literals
    }

    /// The text not yet consumed, leading spaces skipped.
    pub fn rest(&mut self) -> &'a [u8] {
        self.skip_spaces();
        &self.text[self.position..]
    }

    fn skip_spaces(&mut self) {
        while self.text.get(self.position) == Some(&b' ') {
            self.position += 1;
        }
    }

    pub fn next_token(&mut self) -> Result<Option<Token<'a>>, Unterminated> {
        self.skip_spaces();
        let start = self.position;
        let Some(&first) = self.text.get(start) else {
            return Ok(None);
        };
        if let Some(mark) = self.literals.iter().find(|m| m.offset == start) {
            // The announcement runs to its `}`.
            let close = self.text[start..]
                .iter()
                .position(|&b| b == b'}')
                .map_or(self.text.len(), |i| start + i + 1);
            self.position = close;
            return Ok(Some(Token::Literal(mark.len)));
        }
        match first {
            b'(' => {
                self.position += 1;
                Ok(Some(Token::Open))
            }
            b')' => {
                self.position += 1;
                Ok(Some(Token::Close))
            }
            b'"' => {
                let mut value = Vec::new();
                let mut i = start + 1;
                loop {
                    match self.text.get(i) {
                        None => return Err(Unterminated),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let escaped = self.text.get(i + 1).ok_or(Unterminated)?;
                            value.push(*escaped);
                            i += 2;
                        }
                        Some(&b) => {
                            value.push(b);
                            i += 1;
                        }
                    }
                }
                self.position = i + 1;
                Ok(Some(Token::Quoted(value)))
            }
            _ => {
                let mut i = start;
                let mut depth = 0usize;
                while let Some(&b) = self.text.get(i) {
                    match b {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' | b'"' if depth == 0 => break,
                        _ => {}
                    }
                    if depth == 0 && self.literals.iter().any(|m| m.offset == i) && i > start {
                        break;
                    }
                    i += 1;
                }
                self.position = i;
                Ok(Some(Token::Atom(&self.text[start..i])))
            }
        }
    }

    /// Skips a parenthesised list whose `(` was just read, nested lists
    /// included.
    pub fn skip_list(&mut self) -> Result<(), Unterminated> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next_token()? {
                None => return Err(Unterminated),
                Some(Token::Open) => depth += 1,
                Some(Token::Close) => depth -= 1,
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let text = br#"a FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>) "q\"x" {3} NIL"#;
        let literals = [LiteralMark {
            offset: text.iter().position(|&b| b == b'{').expect("brace"),
            len: 3,
            synchronising: true,
        }];
        let mut lexer = Lexer::new(text, &literals);
        let mut tokens = Vec::new();
        while let Some(token) = lexer.next_token().expect("lexes") {
            tokens.push(token);
        }
        assert_eq!(
            tokens,
            [
                Token::Atom(b"a"),
                Token::Atom(b"FETCH"),
                Token::Atom(b"1:*"),
                Token::Open,
                Token::Atom(b"UID"),
                Token::Atom(b"BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>"),
                Token::Close,
                Token::Quoted(b"q\"x".to_vec()),
                Token::Literal(3),
                Token::Atom(b"NIL"),
            ]
        );
        assert_eq!(Lexer::new(b"\"open", &[]).next_token(), Err(Unterminated));
    }
}
