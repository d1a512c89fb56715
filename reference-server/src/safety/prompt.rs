//! The pre-generation prompt safety classifier (seed 000's `safety_pre_check` span).
//!
//! Pure, allocation-light and fast (a few microseconds for an ordinary prompt): rules and a
//! blocklist by [`Category`], applied to a normalised form of the prompt.
//!
//! # Normalisation
//! Before matching, the prompt is lowercased; accents are stripped (`nüde` is `nude`), as are
//! combining marks and invisible characters (zero-width spaces, soft hyphens); full-width letters
//! and common Cyrillic/Greek look-alikes are folded to ASCII. The text is cut into words at every
//! character that is not a letter, a digit, `@` or `$`. In each word that is not a plain number,
//! leetspeak is undone (`0`→o, `1`→i, `3`→e, `4`→a, `5`→s, `7`→t, `@`→a, `$`→s). A word with a
//! letter repeated three or more times also matches with the run collapsed to two
//! (`pussssy`), and with every run squeezed to one (`naaaaked`).
//!
//! # Matching
//! - Whole words only (`class` is not `ass`, `therapist` is not `rapist`, `Essex` is not `sex`);
//!   a trailing `s` is allowed (`nudes`, `kids`). Phrases match as consecutive words, whatever
//!   separates them (`blow-job`, `self harm`).
//! - Words split by separators match only when the pieces form a blocked term: runs of single
//!   letters (`n.a.k.e.d`, `n a k e d`, `s-3-x`) and words split by punctuation without spaces
//!   (`nak.ed`, `pen-is`). Ordinary words separated by spaces are never glued (`the pen is red`).
//! - A few benign phrases exempt their words (`naked eye`, `minor key`, `cum laude`,
//!   `murder of crows`, `oilseed rape`, `pussy willow`, `blue tits`, ...).
//! - CSAM rule: any minor term (`child`, `kid`, `minor`, `teen`, `underage`, `schoolgirl`, ...,
//!   or an age under 18 such as `12 year old`, `12yo`) together with any sexual term anywhere in
//!   the prompt (the explicit NSFW terms and the subtle sexual ones such as `sultry` or
//!   `lingerie`) is [`Category::Csam`]. CSAM takes precedence over every other category; among
//!   the others, [`Category::PRECEDENCE`] decides.
//! - Subtle terms (`sultry`, `lingerie`, `gory`, `carnage`, ...) never block on their own: they
//!   raise the category's score, and the post-generation image classifier catches what they
//!   produce.
//!
//! # Scores
//! Per category, `score = 1 - Π(1 - wᵢ)` over the matched terms: an explicit term weighs 0.9, a
//! subtle one 0.1 to 0.5, a minor term 0.1 towards CSAM; the CSAM rule sets CSAM's score to 1.
//! Scores are for logs and metrics; blocking depends only on explicit matches.
//!
//! # Rule ids
//! [`PromptVerdict::matched_rule`] is a fixed id, never the matched text (which is part of the
//! prompt and must not reach logs): `<category>.term`, `<category>.phrase`, `<category>.spaced`
//! (pieces joined across separators), `<category>.extra` (a configured extra term), or
//! [`RULE_MINOR_SEXUAL`]. [`RULE_IDS`] lists them all.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// A safety category, as used in `safety_blocks_total{category}` and error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Sexual content.
    Nsfw,
    /// Graphic violence, including sexual violence.
    Violence,
    /// Slurs, hate speech and extremist slogans.
    Hate,
    /// Sexual content involving minors. Takes precedence over every other category.
    Csam,
    /// Suicide and self-harm.
    SelfHarm,
}

impl Category {
    /// Every category, in declaration order (the order of [`PromptVerdict::scores`]).
    pub const ALL: [Category; 5] = [
        Category::Nsfw,
        Category::Violence,
        Category::Hate,
        Category::Csam,
        Category::SelfHarm,
    ];

    /// Which category a prompt is blocked for when it matches several: first wins.
    pub const PRECEDENCE: [Category; 5] = [
        Category::Csam,
        Category::Violence,
        Category::Hate,
        Category::SelfHarm,
        Category::Nsfw,
    ];

    /// The label value: `nsfw`, `violence`, `hate`, `csam` or `self_harm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Nsfw => "nsfw",
            Category::Violence => "violence",
            Category::Hate => "hate",
            Category::Csam => "csam",
            Category::SelfHarm => "self_harm",
        }
    }

    /// Parses a label value; `None` for anything else.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    fn idx(self) -> usize {
        self as usize
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classifier's answer for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptVerdict {
    /// The category the prompt is blocked for; `None`: it may proceed to generation.
    pub blocked: Option<Category>,
    /// The id of the rule that blocked it (see the [module docs](self)); never prompt text.
    pub matched_rule: Option<&'static str>,
    /// A score in [0, 1] for every category, in [`Category::ALL`] order.
    pub scores: Vec<(Category, f32)>,
}

impl PromptVerdict {
    /// True when the prompt is blocked.
    pub fn is_blocked(&self) -> bool {
        self.blocked.is_some()
    }

    /// The score of one category (0 when absent).
    pub fn score(&self, category: Category) -> f32 {
        self.scores
            .iter()
            .find(|(c, _)| *c == category)
            .map_or(0.0, |(_, s)| *s)
    }
}

/// The rule id of the CSAM composition rule: a minor term together with a sexual term.
pub const RULE_MINOR_SEXUAL: &str = "csam.minor_sexual";

/// How a blocklist entry matched; indexes [`RULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Term = 0,
    Phrase = 1,
    Spaced = 2,
    Extra = 3,
}

/// Rule ids by `[category][how]`.
const RULES: [[&str; 4]; 5] = [
    ["nsfw.term", "nsfw.phrase", "nsfw.spaced", "nsfw.extra"],
    [
        "violence.term",
        "violence.phrase",
        "violence.spaced",
        "violence.extra",
    ],
    ["hate.term", "hate.phrase", "hate.spaced", "hate.extra"],
    ["csam.term", "csam.phrase", "csam.spaced", "csam.extra"],
    [
        "self_harm.term",
        "self_harm.phrase",
        "self_harm.spaced",
        "self_harm.extra",
    ],
];

/// Every id [`PromptVerdict::matched_rule`] can hold (a bounded set, safe as a metric label).
pub const RULE_IDS: [&str; 21] = [
    RULES[0][0],
    RULES[0][1],
    RULES[0][2],
    RULES[0][3],
    RULES[1][0],
    RULES[1][1],
    RULES[1][2],
    RULES[1][3],
    RULES[2][0],
    RULES[2][1],
    RULES[2][2],
    RULES[2][3],
    RULES[3][0],
    RULES[3][1],
    RULES[3][2],
    RULES[3][3],
    RULES[4][0],
    RULES[4][1],
    RULES[4][2],
    RULES[4][3],
    RULE_MINOR_SEXUAL,
];

/// Weight of an explicit (blocking) term in its category's score.
const EXPLICIT_WEIGHT: f32 = 0.9;
/// Weight of a minor term alone in the CSAM score.
const MINOR_WEIGHT: f32 = 0.1;

// ---------------------------------------------------------------------------------------------
// The built-in lists. Terms are written plainly; they go through the same normalisation as
// prompts, and multi-word terms become phrases.

/// What a listed term does when it matches.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// Blocks for the category (NSFW terms also count as sexual for the CSAM rule).
    Block(Category),
    /// Blocks for the category and counts as sexual (sexual violence).
    SexualBlock(Category),
    /// Raises the category's score only.
    Signal(Category, f32),
    /// Raises the category's score and counts as sexual for the CSAM rule.
    SexualSignal(Category, f32),
    /// Names a minor, for the CSAM rule.
    Minor,
}

const NSFW_EXPLICIT: &[&str] = &[
    "nude",
    "nudes",
    "naked",
    "nudity",
    "nudist",
    "topless",
    "bare breasts",
    "bare breasted",
    "nsfw",
    "porn",
    "porno",
    "pornographic",
    "pornography",
    "xxx",
    "hentai",
    "erotica",
    "erotic",
    "sex",
    "having sex",
    "sex scene",
    "sex tape",
    "sexually explicit",
    "intercourse",
    "orgasm",
    "orgy",
    "orgies",
    "masturbate",
    "masturbating",
    "masturbation",
    "genitals",
    "genitalia",
    "penis",
    "vagina",
    "vulva",
    "clitoris",
    "nipple",
    "areola",
    "boob",
    "boobs",
    "boobies",
    "titties",
    "tits",
    "pussy",
    "cum",
    "cumshot",
    "semen",
    "ejaculate",
    "ejaculating",
    "ejaculation",
    "blowjob",
    "blow job",
    "handjob",
    "hand job",
    "fellatio",
    "cunnilingus",
    "anal",
    "dildo",
    "bdsm",
    "bondage",
    "gangbang",
    "gang bang",
    "threesome",
    "creampie",
    "deepthroat",
    "milf",
    "onlyfans",
    "ass",
    "butthole",
    "lewd",
    "undressed",
    "unclothed",
    "without clothes",
    "without clothing",
    "no clothes",
    "no clothing",
    "wearing nothing",
    "strip club",
    "striptease",
    "camgirl",
    "sexting",
    "upskirt",
    "downblouse",
];

/// Sexual, but not explicit: passes the prompt check, counts for the CSAM rule.
const NSFW_SUBTLE_SEXUAL: &[(&str, f32)] = &[
    ("sexy", 0.35),
    ("sexual", 0.5),
    ("sultry", 0.3),
    ("risque", 0.3),
    ("boudoir", 0.3),
    ("lingerie", 0.35),
    ("seductive", 0.35),
    ("seductively", 0.35),
    ("sensual", 0.3),
    ("sensually", 0.3),
    ("provocative", 0.25),
    ("provocatively", 0.25),
    ("suggestive", 0.25),
    ("kinky", 0.4),
    ("fetish", 0.35),
    ("busty", 0.35),
    ("cleavage", 0.3),
    ("skimpy", 0.3),
    ("scantily clad", 0.4),
    ("barely clothed", 0.4),
    ("see through", 0.3),
    ("thong", 0.3),
    ("lust", 0.25),
    ("lustful", 0.3),
    ("naughty", 0.15),
];

/// Mildly NSFW context that is not sexual by itself (a kid in a bikini is not CSAM).
const NSFW_SUBTLE: &[(&str, f32)] = &[
    ("steamy", 0.2),
    ("bikini", 0.1),
    ("underwear", 0.15),
    ("revealing", 0.15),
];

const VIOLENCE_EXPLICIT: &[&str] = &[
    "decapitated",
    "decapitation",
    "decapitating",
    "beheaded",
    "beheading",
    "dismembered",
    "dismembering",
    "dismemberment",
    "disembowel",
    "disemboweled",
    "disembowelled",
    "disembowelment",
    "eviscerated",
    "evisceration",
    "mutilated",
    "mutilating",
    "mutilation",
    "torture",
    "tortured",
    "torturing",
    "murder",
    "murdered",
    "murdering",
    "murderer",
    "genocide",
    "lynching",
    "lynched",
    "bludgeoned",
    "bludgeoning",
    "snuff film",
    "mass shooting",
    "school shooting",
    "shooting people",
    "shooting a person",
    "shot in the head",
    "slit throat",
    "slit his throat",
    "slit her throat",
    "slit their throat",
    "throat slit",
    "severed head",
    "severed limb",
    "burned alive",
    "burnt alive",
    "burning alive",
    "blown to pieces",
    "stabbed to death",
    "beaten to death",
    "gouged out eyes",
    "eyes gouged out",
    "terrorist attack",
    "suicide bomber",
    "suicide bombing",
    "animal cruelty",
    "child abuse",
];

/// Sexual violence: blocks as violence and counts as sexual for the CSAM rule.
const VIOLENCE_SEXUAL: &[&str] = &[
    "rape",
    "raped",
    "raping",
    "rapist",
    "molest",
    "molested",
    "molesting",
    "molestation",
    "molester",
    "sexual assault",
    "sexually assaulted",
];

const VIOLENCE_SUBTLE: &[(&str, f32)] = &[
    ("gory", 0.3),
    ("gore", 0.3),
    ("bloodied", 0.3),
    ("bloody", 0.2),
    ("blood", 0.15),
    ("carnage", 0.35),
    ("brutal", 0.2),
    ("massacre", 0.4),
    ("gruesome", 0.35),
    ("mangled", 0.3),
    ("bloodbath", 0.4),
    ("savage", 0.15),
    ("violent", 0.25),
    ("violence", 0.25),
    ("corpse", 0.3),
    ("dead body", 0.3),
    ("killing", 0.3),
    ("wounded", 0.2),
    ("stabbing", 0.35),
    ("stabbed", 0.35),
    ("gunshot wound", 0.4),
    ("execution", 0.2),
];

const HATE_EXPLICIT: &[&str] = &[
    "nigger",
    "faggot",
    "kike",
    "wetback",
    "raghead",
    "towelhead",
    "tranny",
    "gook",
    "heil hitler",
    "sieg heil",
    "white power",
    "white supremacy",
    "white supremacist",
    "ku klux klan",
    "kkk",
    "1488",
    "neo nazi",
    "nazi salute",
    "nazi swastika",
    "ethnic cleansing",
    "holocaust denial",
    "gas the jews",
    "kill the jews",
    "kill all jews",
    "kill all muslims",
    "kill all gays",
    "master race",
    "race war",
    "subhuman",
    "untermensch",
];

const SELF_HARM_EXPLICIT: &[&str] = &[
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "kill yourself",
    "killing yourself",
    "kys",
    "self harm",
    "selfharm",
    "self harming",
    "self injury",
    "cutting myself",
    "cut myself",
    "slit my wrists",
    "slitting my wrists",
    "slit wrists",
    "slashed wrists",
    "hang myself",
    "hanging myself",
    "end my life",
    "ending my life",
    "take my own life",
    "overdose",
    "pro ana",
    "proana",
    "thinspo",
    "thinspiration",
];

const CSAM_EXPLICIT: &[&str] = &[
    "child porn",
    "child pornography",
    "kiddie porn",
    "kiddy porn",
    "jailbait",
    "pedophile",
    "pedophilia",
    "pedophilic",
    "paedophile",
    "paedophilia",
    "pedo",
    "paedo",
    "lolicon",
    "shotacon",
    "pthc",
    "csam",
    "child sexual abuse",
    "child sex",
    "underage sex",
    "sexualized child",
    "sexualised child",
];

const MINOR_TERMS: &[&str] = &[
    "child",
    "children",
    "kid",
    "kids",
    "kiddie",
    "kiddo",
    "minor",
    "minors",
    "teen",
    "teens",
    "teenage",
    "teenaged",
    "teenager",
    "tween",
    "preteen",
    "pre teen",
    "underage",
    "underaged",
    "schoolgirl",
    "schoolboy",
    "toddler",
    "infant",
    "newborn",
    "young girl",
    "young boy",
    "little girl",
    "little boy",
    "loli",
    "lolita",
    "shota",
    "pubescent",
    "prepubescent",
    "middle schooler",
    "elementary schooler",
    "grade schooler",
];

/// Benign phrases whose words are exempt from every rule.
const EXEMPT_PHRASES: &[&str] = &[
    "naked eye",
    "naked mole rat",
    "naked flame",
    "nude lipstick",
    "nude color",
    "nude colour",
    "nude heels",
    "nude shoes",
    "cum laude",
    "pussy willow",
    "pussy cat",
    "blue tit",
    "great tit",
    "coal tit",
    "marsh tit",
    "long tailed tit",
    "oilseed rape",
    "murder of crows",
    "murder mystery",
    "murder mysteries",
    "minor key",
    "minor chord",
    "minor scale",
    "minor league",
    "minor detail",
    "minor injury",
    "minor injuries",
    "minor planet",
    "kid gloves",
    "kid leather",
    "suicide squad",
    "suicide door",
];

/// Number words for ages ("twelve year old"): index + 1 is the value.
const NUMBER_WORDS: [&str; 17] = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
];

// ---------------------------------------------------------------------------------------------
// Entries.

/// What a matched term contributes. Several lists may name the same term: entries merge.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Entry {
    /// Categories it blocks (bits by `Category as u8`).
    block: u8,
    /// The subset of `block` that comes from configured extra terms.
    extra: u8,
    /// Score weight per category (index `Category as usize`).
    signal: [f32; 5],
    /// Counts as a sexual term for the CSAM rule.
    sexual: bool,
    /// Names a minor, for the CSAM rule.
    minor: bool,
}

impl Entry {
    fn from_role(role: Role) -> Entry {
        let mut e = Entry::default();
        match role {
            Role::Block(c) => {
                e.block = c.bit();
                e.sexual = c == Category::Nsfw;
            }
            Role::SexualBlock(c) => {
                e.block = c.bit();
                e.sexual = true;
            }
            Role::Signal(c, w) => e.signal[c.idx()] = w,
            Role::SexualSignal(c, w) => {
                e.signal[c.idx()] = w;
                e.sexual = true;
            }
            Role::Minor => {
                e.signal[Category::Csam.idx()] = MINOR_WEIGHT;
                e.minor = true;
            }
        }
        e
    }

    fn merge(&mut self, other: &Entry) {
        self.block |= other.block;
        self.extra |= other.extra;
        for (a, b) in self.signal.iter_mut().zip(other.signal) {
            *a = a.max(b);
        }
        self.sexual |= other.sexual;
        self.minor |= other.minor;
    }
}

/// A multi-word term.
#[derive(Debug, Clone)]
struct Phrase {
    words: Box<[Box<str>]>,
    entry: Entry,
}

// ---------------------------------------------------------------------------------------------
// The classifier.

/// The pre-generation prompt classifier: the built-in lists plus configured extra terms.
///
/// Build it once (at start or on config reload) and share it: [`check`](Self::check) takes
/// `&self` and the classifier is `Send + Sync`.
#[derive(Debug, Clone)]
pub struct PromptClassifier {
    /// Single-word terms by normalised text.
    single: HashMap<Box<str>, Entry>,
    /// Single-word terms by squeezed text (every run collapsed to one letter), for words that
    /// stretch a letter; only terms whose squeezed form has at least 3 letters.
    squeezed: HashMap<Box<str>, Entry>,
    /// Multi-word terms.
    phrases: Vec<Phrase>,
    /// Phrase indexes by first word.
    phrase_first: HashMap<Box<str>, Vec<u32>>,
    /// Phrase indexes by squeezed first word.
    phrase_first_squeezed: HashMap<Box<str>, Vec<u32>>,
    /// Exempt phrases by first word.
    exempt: HashMap<Box<str>, Vec<Box<[Box<str>]>>>,
    /// The longest single-word term, in characters (bounds the separator-joining search).
    max_term_chars: usize,
}

impl Default for PromptClassifier {
    fn default() -> Self {
        PromptClassifier::new(&[])
    }
}

impl PromptClassifier {
    /// The built-in lists plus `extra_blocklist`: configured terms (words or phrases, written
    /// plainly; they are normalised like prompts) that block for their category. Empty terms are
    /// ignored. Extra NSFW terms also count as sexual for the CSAM rule.
    pub fn new(extra_blocklist: &[(Category, String)]) -> Self {
        let mut c = PromptClassifier {
            single: HashMap::new(),
            squeezed: HashMap::new(),
            phrases: Vec::new(),
            phrase_first: HashMap::new(),
            phrase_first_squeezed: HashMap::new(),
            exempt: HashMap::new(),
            max_term_chars: 0,
        };
        let blocks: [(Role, &[&str]); 7] = [
            (Role::Block(Category::Nsfw), NSFW_EXPLICIT),
            (Role::Block(Category::Violence), VIOLENCE_EXPLICIT),
            (Role::SexualBlock(Category::Violence), VIOLENCE_SEXUAL),
            (Role::Block(Category::Hate), HATE_EXPLICIT),
            (Role::Block(Category::SelfHarm), SELF_HARM_EXPLICIT),
            (Role::Block(Category::Csam), CSAM_EXPLICIT),
            (Role::Minor, MINOR_TERMS),
        ];
        for (role, terms) in blocks {
            for term in terms {
                c.add(term, Entry::from_role(role));
            }
        }
        for (term, w) in NSFW_SUBTLE_SEXUAL {
            c.add(
                term,
                Entry::from_role(Role::SexualSignal(Category::Nsfw, *w)),
            );
        }
        for (term, w) in NSFW_SUBTLE {
            c.add(term, Entry::from_role(Role::Signal(Category::Nsfw, *w)));
        }
        for (term, w) in VIOLENCE_SUBTLE {
            c.add(term, Entry::from_role(Role::Signal(Category::Violence, *w)));
        }
        for (category, term) in extra_blocklist {
            let mut e = Entry::from_role(Role::Block(*category));
            e.extra = category.bit();
            c.add(term, e);
        }
        for phrase in EXEMPT_PHRASES {
            let words = words_of(phrase);
            if let Some(first) = words.first() {
                let first = first.clone();
                c.exempt.entry(first).or_default().push(words);
            }
        }
        // Squeezed forms last, so that they merge every list's entry for a word.
        for (word, entry) in &c.single {
            let sq: String = collapsed(word, 1).collect();
            if sq.chars().count() >= 3 {
                c.squeezed
                    .entry(sq.into_boxed_str())
                    .or_default()
                    .merge(entry);
            }
        }
        c
    }

    /// Adds one term (normalised) with its entry.
    fn add(&mut self, term: &str, entry: Entry) {
        let words = words_of(term);
        match words.len() {
            0 => {}
            1 => {
                let word = words.into_vec().pop().expect("one word");
                self.max_term_chars = self.max_term_chars.max(word.chars().count());
                self.single.entry(word).or_default().merge(&entry);
            }
            _ => {
                if let Some(p) = self.phrases.iter_mut().find(|p| p.words == words) {
                    p.entry.merge(&entry);
                    return;
                }
                let idx = self.phrases.len() as u32;
                let first = words[0].clone();
                let sq: String = collapsed(&first, 1).collect();
                if sq.chars().count() >= 3 {
                    self.phrase_first_squeezed
                        .entry(sq.into_boxed_str())
                        .or_default()
                        .push(idx);
                }
                self.phrase_first.entry(first).or_default().push(idx);
                self.phrases.push(Phrase { words, entry });
            }
        }
    }

    /// Classifies one prompt. Pure; the verdict carries no prompt text.
    pub fn check(&self, prompt: &str) -> PromptVerdict {
        let mut text = tokenize(prompt);
        self.mark_exempt(&mut text);
        let mut acc = Acc::new();
        for i in 0..text.toks.len() {
            let t = text.toks[i];
            if t.exempt {
                continue;
            }
            if t.minor_age || age_minor(&text, i) {
                acc.minor = true;
                acc.keep[Category::Csam.idx()] *= 1.0 - MINOR_WEIGHT;
            }
            let s = text.s(&t);
            if let Some(e) = self.lookup(s, t.numeric, t.run3) {
                acc.apply(&e, How::Term);
            }
            self.match_phrases(&text, i, &mut acc);
        }
        self.match_letter_runs(&text, &mut acc);
        self.match_split_words(&text, &mut acc);
        acc.finish()
    }

    /// A single word's entry: exact, with a plural `s`, or (for stretched words) collapsed.
    fn lookup(&self, w: &str, numeric: bool, run3: bool) -> Option<Entry> {
        if let Some(e) = self.single.get(w) {
            return Some(*e);
        }
        if numeric {
            return None;
        }
        if w.len() >= 4 {
            if let Some(e) = w.strip_suffix('s').and_then(|stem| self.single.get(stem)) {
                return Some(*e);
            }
        }
        if run3 {
            let c2: String = collapsed(w, 2).collect();
            if let Some(e) = self.single.get(c2.as_str()) {
                return Some(*e);
            }
            let sq: String = collapsed(w, 1).collect();
            if let Some(e) = self.squeezed.get(sq.as_str()) {
                return Some(*e);
            }
        }
        None
    }

    /// Phrases starting at token `i`.
    fn match_phrases(&self, text: &Text, i: usize, acc: &mut Acc) {
        let t = &text.toks[i];
        let s = text.s(t);
        if let Some(idxs) = self.phrase_first.get(s) {
            for &p in idxs {
                self.try_phrase(text, i, p, acc);
            }
        }
        if t.run3 {
            let mut seen: Vec<u32> = Vec::new();
            let c2: String = collapsed(s, 2).collect();
            let sq: String = collapsed(s, 1).collect();
            for idxs in [
                self.phrase_first.get(c2.as_str()),
                self.phrase_first_squeezed.get(sq.as_str()),
            ]
            .into_iter()
            .flatten()
            {
                for &p in idxs {
                    if !seen.contains(&p) {
                        seen.push(p);
                        self.try_phrase(text, i, p, acc);
                    }
                }
            }
        }
    }

    fn try_phrase(&self, text: &Text, i: usize, p: u32, acc: &mut Acc) {
        let phrase = &self.phrases[p as usize];
        if words_at(text, i, &phrase.words) {
            acc.apply(&phrase.entry, How::Phrase);
        }
    }

    /// Marks the tokens of benign phrases as exempt.
    fn mark_exempt(&self, text: &mut Text) {
        for i in 0..text.toks.len() {
            let Some(list) = self.exempt.get(text.s(&text.toks[i])) else {
                continue;
            };
            for words in list {
                if words_at(text, i, words) {
                    for t in &mut text.toks[i..i + words.len()] {
                        t.exempt = true;
                    }
                }
            }
        }
    }

    /// Runs of single letters (`n a k e d`, `n.a.k.e.d`, `s-3-x`): every stretch of at least 3
    /// letters that forms a blocked word.
    fn match_letter_runs(&self, text: &Text, acc: &mut Acc) {
        let toks = &text.toks;
        let single_letter =
            |t: &Tok| !t.exempt && t.end - t.start <= 4 && text.s(t).chars().count() == 1;
        let mut i = 0;
        let mut word = String::new();
        while i < toks.len() {
            if !single_letter(&toks[i]) {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < toks.len() && single_letter(&toks[j]) && toks[j].sep_len <= 3 {
                j += 1;
            }
            if j - i >= 3 {
                for s in i..j - 2 {
                    word.clear();
                    let mut digits = 0;
                    for (n, t) in toks[s..j.min(s + self.max_term_chars)].iter().enumerate() {
                        digits += digit_count(text.s(t));
                        word.extend(text.s(t).chars().map(leet));
                        if n >= 2 && mostly_letters(n + 1 - digits, digits) {
                            if let Some(e) = self.lookup(&word, false, has_run(&word, 3)) {
                                acc.apply(&e, How::Spaced);
                            }
                        }
                    }
                }
            }
            i = j;
        }
    }

    /// Words split by punctuation without spaces (`nak.ed`, `pen-is`): 2 to 4 pieces glued.
    fn match_split_words(&self, text: &Text, acc: &mut Acc) {
        let toks = &text.toks;
        let glued = |t: &Tok| !t.exempt && !t.sep_ws && t.sep_len <= 2;
        let mut word = String::new();
        for i in 0..toks.len() {
            if toks[i].exempt || i + 1 >= toks.len() || !glued(&toks[i + 1]) {
                continue;
            }
            word.clear();
            word.extend(text.s(&toks[i]).chars().map(leet));
            let mut all_single = text.s(&toks[i]).chars().count() == 1;
            let mut digits = digit_count(text.s(&toks[i]));
            for t in toks.iter().take((i + 4).min(toks.len())).skip(i + 1) {
                if !glued(t) {
                    break;
                }
                word.extend(text.s(t).chars().map(leet));
                all_single &= text.s(t).chars().count() == 1;
                digits += digit_count(text.s(t));
                if word.len() > 4 * self.max_term_chars {
                    break;
                }
                // Letter runs are match_letter_runs' business.
                if all_single || !mostly_letters(word.chars().count() - digits, digits) {
                    continue;
                }
                if let Some(e) = self.lookup(&word, false, has_run(&word, 3)) {
                    acc.apply(&e, How::Spaced);
                }
            }
        }
    }
}

/// Normalised words of a listed term.
fn words_of(term: &str) -> Box<[Box<str>]> {
    let text = tokenize(term);
    text.toks
        .iter()
        .map(|t| Box::<str>::from(text.s(t)))
        .collect()
}

/// Do `words` match the tokens from `i` on? The last word may take a plural `s`; exempt tokens
/// never match.
fn words_at(text: &Text, i: usize, words: &[Box<str>]) -> bool {
    if i + words.len() > text.toks.len() {
        return false;
    }
    words.iter().enumerate().all(|(k, w)| {
        let t = &text.toks[i + k];
        !t.exempt && word_eq(text.s(t), t.run3, w, k + 1 == words.len())
    })
}

/// Does token text `t` match listed word `w`? Exactly; as its plural when `plural`; or, for
/// stretched tokens, collapsed to runs of two or squeezed.
fn word_eq(t: &str, run3: bool, w: &str, plural: bool) -> bool {
    t == w
        || (plural && t.len() == w.len() + 1 && t.starts_with(w) && t.ends_with('s'))
        || (run3
            && (collapsed(t, 2).eq(w.chars())
                || (collapsed(w, 1).count() >= 3 && collapsed(t, 1).eq(collapsed(w, 1)))))
}

/// Is the number at token `i` an age under 18 (`12 year old`, `twelve-years-old`, `12 yo`,
/// `12 y/o`)?
fn age_minor(text: &Text, i: usize) -> bool {
    let next = |k: usize| text.toks.get(i + k).map(|t| text.s(t));
    let unit = match next(1) {
        Some("year" | "years" | "yr" | "yrs") => next(2) == Some("old"),
        Some("yo") => true,
        Some("y") => next(2) == Some("o"),
        _ => false,
    };
    if !unit {
        return false;
    }
    let t = &text.toks[i];
    let s = text.s(t);
    let n = if t.numeric {
        if s.len() <= 2 {
            s.parse::<u32>().ok()
        } else {
            None
        }
    } else {
        NUMBER_WORDS
            .iter()
            .position(|w| *w == s)
            .map(|p| p as u32 + 1)
    };
    matches!(n, Some(1..=17))
}

/// A one-token age under 18: `12yo`, `12yr`, `12yrs`, `12yearold`, `12y` (raw, before leetspeak).
fn age_suffix_minor(raw: &str) -> bool {
    let digits = raw.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 2 {
        return false;
    }
    let (n, unit) = raw.split_at(digits);
    matches!(
        unit,
        "y" | "yo" | "yr" | "yrs" | "yrold" | "yrsold" | "yearold" | "yearsold"
    ) && matches!(n.parse::<u32>(), Ok(1..=17))
}

// ---------------------------------------------------------------------------------------------
// The tally.

struct Acc {
    hits: [u32; 5],
    rule: [Option<&'static str>; 5],
    /// Π(1 - w) per category.
    keep: [f32; 5],
    minor: bool,
    sexual: bool,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            hits: [0; 5],
            rule: [None; 5],
            keep: [1.0; 5],
            minor: false,
            sexual: false,
        }
    }

    fn apply(&mut self, e: &Entry, how: How) {
        for c in Category::ALL {
            let i = c.idx();
            if e.block & c.bit() != 0 {
                self.hits[i] += 1;
                self.keep[i] *= 1.0 - EXPLICIT_WEIGHT;
                if self.rule[i].is_none() {
                    let how = if e.extra & c.bit() != 0 {
                        How::Extra
                    } else {
                        how
                    };
                    self.rule[i] = Some(RULES[i][how as usize]);
                }
            }
            if e.signal[i] > 0.0 {
                self.keep[i] *= 1.0 - e.signal[i];
            }
        }
        self.minor |= e.minor;
        self.sexual |= e.sexual;
    }

    fn finish(mut self) -> PromptVerdict {
        let csam = Category::Csam.idx();
        let composed = self.minor && self.sexual;
        if composed {
            self.keep[csam] = 0.0;
        }
        let (blocked, matched_rule) = if self.hits[csam] > 0 {
            (Some(Category::Csam), self.rule[csam])
        } else if composed {
            (Some(Category::Csam), Some(RULE_MINOR_SEXUAL))
        } else {
            match Category::PRECEDENCE
                .into_iter()
                .find(|c| self.hits[c.idx()] > 0)
            {
                Some(c) => (Some(c), self.rule[c.idx()]),
                None => (None, None),
            }
        };
        let scores = Category::ALL
            .into_iter()
            .map(|c| (c, (1.0 - self.keep[c.idx()]).clamp(0.0, 1.0)))
            .collect();
        PromptVerdict {
            blocked,
            matched_rule,
            scores,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation.

/// A normalised word: a byte range of [`Text::buf`] and what surrounded it.
#[derive(Debug, Clone, Copy)]
struct Tok {
    start: u32,
    end: u32,
    /// Only ASCII digits (kept as digits: no leetspeak).
    numeric: bool,
    /// Some letter repeats three or more times in a row.
    run3: bool,
    /// The separator before it holds whitespace.
    sep_ws: bool,
    /// Characters in the separator before it.
    sep_len: u32,
    /// The word itself is an age under 18 (`12yo`).
    minor_age: bool,
    /// Part of a benign phrase.
    exempt: bool,
}

struct Text {
    buf: String,
    toks: Vec<Tok>,
}

impl Text {
    fn s(&self, t: &Tok) -> &str {
        &self.buf[t.start as usize..t.end as usize]
    }
}

struct Tokenizer {
    text: Text,
    raw: String,
    sep_ws: bool,
    sep_len: u32,
}

impl Tokenizer {
    fn push(&mut self, ch: char) {
        if ch.is_ascii_alphanumeric()
            || ch == '@'
            || ch == '$'
            || (!ch.is_ascii() && ch.is_alphanumeric())
        {
            self.raw.push(ch);
        } else {
            self.flush();
            self.sep_len = self.sep_len.saturating_add(1);
            self.sep_ws |= ch.is_whitespace();
        }
    }

    fn flush(&mut self) {
        if self.raw.is_empty() {
            return;
        }
        let digits = self.raw.bytes().filter(u8::is_ascii_digit).count();
        let numeric = digits == self.raw.len();
        let buf = &mut self.text.buf;
        let start = buf.len();
        if numeric || !mostly_letters(self.raw.chars().count() - digits, digits) {
            // `1024`, `53x`, `35mm`: numbers and measurements, not leetspeak.
            buf.push_str(&self.raw);
        } else {
            buf.extend(self.raw.chars().map(leet));
        }
        let end = buf.len();
        self.text.toks.push(Tok {
            start: start as u32,
            end: end as u32,
            numeric,
            run3: !numeric && has_run(&buf[start..end], 3),
            sep_ws: self.sep_ws,
            sep_len: self.sep_len,
            minor_age: !numeric && age_suffix_minor(&self.raw),
            exempt: false,
        });
        self.raw.clear();
        self.sep_ws = false;
        self.sep_len = 0;
    }
}

/// Lowercases, folds and cuts `input` into normalised words.
fn tokenize(input: &str) -> Text {
    let mut tk = Tokenizer {
        text: Text {
            buf: String::with_capacity(input.len()),
            toks: Vec::with_capacity(input.len() / 4 + 1),
        },
        raw: String::with_capacity(32),
        sep_ws: false,
        sep_len: 0,
    };
    for c in input.chars() {
        if c.is_ascii() {
            tk.push(c.to_ascii_lowercase());
            continue;
        }
        if let '\u{FF01}'..='\u{FF5E}' = c {
            // Full-width ASCII.
            let a = char::from_u32(c as u32 - 0xFEE0).unwrap_or(' ');
            tk.push(a.to_ascii_lowercase());
            continue;
        }
        for lc in c.to_lowercase() {
            match fold(lc) {
                Some(s) => s.chars().for_each(|f| tk.push(f)),
                None => tk.push(lc),
            }
        }
    }
    tk.flush();
    tk.text
}

/// Leetspeak is undone only where letters are at least as many as digits (`s3x`, `n4k3d`, but
/// not `53x` or `5 3 x`, which read as measurements).
fn mostly_letters(letters: usize, digits: usize) -> bool {
    letters >= digits
}

/// Digits among the characters of `s`.
fn digit_count(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// Undoes leetspeak for one character.
fn leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '@' => 'a',
        '$' => 's',
        _ => c,
    }
}

/// Base letters of U+0100..=U+017F (Latin Extended-A), `?` where [`fold`] handles it itself.
const LATIN_EXT_A: &[u8; 128] = b"aaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiii??jjkkkllllllllllnnnnnnnnnoooooo??rrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs";

/// ASCII folding of one lowercase non-ASCII character: `Some("")` drops it (combining marks,
/// invisible characters), `None` keeps it as it is.
fn fold(c: char) -> Option<&'static str> {
    const ASCII: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    let letter = |b: u8| Some(ASCII[(b - b'a') as usize]);
    match c {
        'à'..='å' => letter(b'a'),
        'æ' => Some("ae"),
        'ç' => letter(b'c'),
        'è'..='ë' => letter(b'e'),
        'ì'..='ï' => letter(b'i'),
        'ð' => letter(b'd'),
        'ñ' => letter(b'n'),
        'ò'..='ö' | 'ø' => letter(b'o'),
        'ù'..='ü' => letter(b'u'),
        'ý' | 'ÿ' => letter(b'y'),
        'þ' => Some("th"),
        'ß' => Some("ss"),
        'ĳ' | 'Ĳ' => Some("ij"),
        'œ' | 'Œ' => Some("oe"),
        '\u{100}'..='\u{17F}' => {
            let b = LATIN_EXT_A[c as usize - 0x100];
            if b == b'?' {
                None
            } else {
                letter(b)
            }
        }
        // Cyrillic and Greek look-alikes.
        'а' | 'α' => letter(b'a'),
        'с' => letter(b'c'),
        'ԁ' => letter(b'd'),
        'е' | 'ё' | 'ε' => letter(b'e'),
        'һ' => letter(b'h'),
        'і' | 'ι' => letter(b'i'),
        'ј' => letter(b'j'),
        'κ' => letter(b'k'),
        'ӏ' => letter(b'l'),
        'о' | 'ο' => letter(b'o'),
        'р' | 'ρ' => letter(b'p'),
        'ѕ' => letter(b's'),
        'τ' => letter(b't'),
        'υ' => letter(b'u'),
        'ν' => letter(b'v'),
        'х' => letter(b'x'),
        'у' => letter(b'y'),
        // Combining marks and invisible characters vanish without splitting the word.
        '\u{0300}'..='\u{036F}'
        | '\u{00AD}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2060}'..='\u{2064}'
        | '\u{FEFF}' => Some(""),
        _ => None,
    }
}

/// `s` with every run of a character cut to at most `max_run`.
fn collapsed(s: &str, max_run: usize) -> impl Iterator<Item = char> + '_ {
    let mut prev = None;
    let mut run = 0;
    s.chars().filter(move |&c| {
        if Some(c) == prev {
            run += 1;
        } else {
            prev = Some(c);
            run = 1;
        }
        run <= max_run
    })
}

/// Does some letter repeat at least `n` times in a row?
fn has_run(s: &str, n: usize) -> bool {
    let mut prev = None;
    let mut run = 0;
    for c in s.chars() {
        if Some(c) == prev {
            run += 1;
            if run >= n && c.is_alphabetic() {
                return true;
            }
        } else {
            prev = Some(c);
            run = 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clf() -> PromptClassifier {
        PromptClassifier::default()
    }

    fn assert_pass(c: &PromptClassifier, p: &str) {
        let v = c.check(p);
        assert!(
            v.blocked.is_none(),
            "{p:?} was blocked as {:?} by {:?}",
            v.blocked,
            v.matched_rule
        );
    }

    fn assert_blocked(c: &PromptClassifier, p: &str, want: Category) {
        let v = c.check(p);
        assert_eq!(v.blocked, Some(want), "{p:?}: {v:?}");
        assert!(v.matched_rule.is_some(), "{p:?}: {v:?}");
    }

    const SUBTLE: [&str; 17] = [
        "sultry",
        "risque",
        "boudoir",
        "lingerie",
        "steamy",
        "seductive",
        "sensual",
        "provocative",
        "gory",
        "bloodied",
        "carnage",
        "brutal",
        "massacre",
        "gruesome",
        "mangled",
        "bloodbath",
        "savage",
    ];

    const EVERYDAY: [&str; 60] = [
        "a man shooting a basketball",
        "a killer whale breaching at sunset",
        "sunset over Essex",
        "a cocktail bar with neon lights",
        "a shot of espresso on a marble counter",
        "a mountain landscape at dawn, oil painting",
        "portrait of an old fisherman, dramatic lighting",
        "product photo of a leather handbag on a white background",
        "a golden retriever puppy playing in the snow",
        "a class photo of a university graduating class",
        "a therapist's office with plants and a couch",
        "Middlesex county map in the style of an old atlas",
        "the Sussex coastline with chalk cliffs",
        "a bass guitar leaning on an amplifier",
        "a glass of red wine on a wooden table",
        "passengers waiting on a train platform",
        "cumulus clouds over a wheat field",
        "a grasshopper on a leaf, macro photography",
        "an assassin's creed style poster of a city",
        "the pen is mightier than the sword, calligraphy",
        "children playing football in a park",
        "a teenager skateboarding in a sunny plaza",
        "a birthday party for a 5 year old with balloons",
        "a kid goat in a green field",
        "oilseed rape fields in bloom in May",
        "a murder of crows on a winter tree",
        "a naked mole rat in a zoo enclosure",
        "stars visible to the naked eye on a clear night",
        "pussy willow branches in a glass vase",
        "a flock of blue tits at a bird feeder",
        "a graduate holding a diploma magna cum laude",
        "a sad piano melody in a minor key, album cover",
        "nude lipstick product shot",
        "a 4k render of a spaceship in orbit",
        "1024x1024 portrait of a cat wearing a crown",
        "a medieval knight in shining armour",
        "a cozy cabin in the woods with smoke from the chimney",
        "a bowl of ramen, steam rising",
        "a lighthouse in a storm",
        "a cyberpunk street market at night",
        "a watercolor of a hummingbird",
        "a vintage car on Route 66",
        "a chef plating a dessert in a busy kitchen",
        "an astronaut riding a horse on the moon",
        "Scunthorpe town centre on a rainy day",
        "a cockpit view of an airliner above the clouds",
        "a shuttlecock mid-air at a badminton match",
        "a skyscraper made of glass reflecting clouds",
        "a spice market in Marrakech",
        "a basket of kittens, soft pastel colours",
        "a firework display over Sydney harbour",
        "a hand-drawn map of a fantasy kingdom",
        "a sextant on the deck of an old ship",
        "analysis chart on a whiteboard in an office",
        "a butterfly on a sunflower",
        "a cat with a sign saying 'class dismissed'",
        "a photographer shooting a wedding",
        "a snowboarder in mid-air, action shot",
        "an infographic about healthy eating",
        "an old map of Kidderminster",
    ];

    #[test]
    fn safety_everyday_prompts_pass() {
        let c = clf();
        for p in EVERYDAY {
            assert_pass(&c, p);
        }
    }

    #[test]
    fn safety_subtle_words_pass_alone_and_in_sentences() {
        let c = clf();
        for w in SUBTLE {
            assert_pass(&c, w);
            assert_pass(&c, &w.to_uppercase());
            assert_pass(&c, &format!("a {w} scene in a quiet city street at night"));
            assert_pass(
                &c,
                &format!("portrait of a woman, {w}, cinematic lighting, 35mm"),
            );
            assert_pass(&c, &format!("{w} painting of a stormy harbour"));
        }
        assert_pass(&c, "risqué");
        assert_pass(
            &c,
            "a gruesome, bloodied, mangled battlefield after the carnage",
        );
    }

    #[test]
    fn safety_subtle_words_raise_scores() {
        let c = clf();
        let v = c.check("a sultry boudoir portrait in lingerie");
        assert!(v.blocked.is_none());
        let nsfw = v.score(Category::Nsfw);
        assert!(nsfw > 0.5 && nsfw < 0.9, "{v:?}");
        let v = c.check("a gory, gruesome battlefield");
        assert!(v.score(Category::Violence) > 0.4, "{v:?}");
        assert_eq!(v.score(Category::Nsfw), 0.0);
        // Many subtle words still never block.
        let many = SUBTLE.join(" ").repeat(10);
        assert!(c.check(&many).blocked.is_none());
    }

    #[test]
    fn safety_explicit_terms_block_by_category() {
        let c = clf();
        assert_blocked(&c, "a naked woman on a beach", Category::Nsfw);
        assert_blocked(&c, "porn", Category::Nsfw);
        assert_blocked(&c, "two people having sex", Category::Nsfw);
        assert_blocked(&c, "a decapitated body in the street", Category::Violence);
        assert_blocked(&c, "a mass shooting at a mall", Category::Violence);
        assert_blocked(&c, "a school shootings scene", Category::Violence);
        assert_blocked(&c, "a crowd doing a nazi salute", Category::Hate);
        assert_blocked(&c, "a poster saying white power", Category::Hate);
        assert_blocked(&c, "someone about to kill myself", Category::SelfHarm);
        assert_blocked(&c, "a self-harm diary", Category::SelfHarm);
        assert_blocked(&c, "jailbait photo", Category::Csam);
        let v = c.check("a naked man");
        assert_eq!(v.matched_rule, Some("nsfw.term"));
        assert!(v.score(Category::Nsfw) >= 0.9);
        let v = c.check("a blow job");
        assert_eq!(v.matched_rule, Some("nsfw.phrase"));
    }

    #[test]
    fn safety_word_boundaries() {
        let c = clf();
        // Substrings of ordinary words do not match.
        for p in [
            "class",
            "a classic car",
            "therapist",
            "the therapist",
            "Essex",
            "Sussex",
            "grass",
            "assassin",
            "cumulus",
            "cocktail",
            "shuttlecock",
            "analysis",
            "scrape",
            "grapes",
            "drapes",
            "therapists and analysts",
            "kidney beans",
            "skidding car",
            "pen is on the table",
        ] {
            assert_pass(&c, p);
        }
        // The words themselves do.
        assert_blocked(&c, "ass", Category::Nsfw);
        assert_blocked(&c, "a rapist", Category::Violence);
        assert_blocked(&c, "sex", Category::Nsfw);
        assert_blocked(&c, "(naked)", Category::Nsfw);
        assert_blocked(&c, "NAKED!", Category::Nsfw);
        assert_blocked(&c, "nudes", Category::Nsfw);
    }

    #[test]
    fn safety_normalisation_catches_obfuscation() {
        let c = clf();
        for p in [
            "NaKeD woman",
            "nüde",
            "nàkéd",
            "n4k3d",
            "p0rn",
            "s3x",
            "$ex",
            "@ss",
            "pr0n0graphy? no, p0rn0graphy",
            "naaaaaked",
            "pussssy",
            "nakeddddd",
            "n.a.k.e.d",
            "n a k e d",
            "a n a k e d woman",
            "n-a-k-e-d",
            "n . a . k . e . d",
            "n_4_k_3_d",
            "s e x",
            "nak.ed",
            "pe-nis",
            "na\u{200B}ked",
            "na\u{00AD}ked",
            "nu\u{0308}de",
            "ｎａｋｅｄ",
            "nаked", // Cyrillic а
            "NΑKED", // Greek capital alpha
        ] {
            assert_blocked(&c, p, Category::Nsfw);
        }
        assert_blocked(&c, "d3c4p1t4t3d", Category::Violence);
        assert_blocked(&c, "k.y.s", Category::SelfHarm);
        assert_blocked(&c, "s u i c i d e", Category::SelfHarm);
        assert_eq!(c.check("n.a.k.e.d").matched_rule, Some("nsfw.spaced"));
        // Spaced letters only count when they form a blocked term.
        for p in [
            "a b c d e",
            "x y z",
            "1 2 3 4",
            "T. S. Eliot reading",
            "a 3 d render",
        ] {
            assert_pass(&c, p);
        }
        // Numbers stay numbers.
        assert_pass(&c, "a 455 horsepower engine");
        assert_pass(&c, "room 5 3 x 4 metres");
    }

    #[test]
    fn safety_collapse_does_not_invent_matches() {
        let c = clf();
        assert_blocked(&c, "xxx", Category::Nsfw);
        assert_blocked(&c, "kkk rally", Category::Hate);
        for p in [
            "love you xx",
            "xxxx hugs",
            "sooo cute",
            "aaas",
            "a bass guitar",
            "kk",
        ] {
            assert_pass(&c, p);
        }
    }

    #[test]
    fn safety_csam_rule_takes_precedence() {
        let c = clf();
        for p in [
            "a naked child",
            "sexy schoolgirl",
            "a teen in lingerie",
            "seductive little girl",
            "kid, sultry pose",
            "underage boudoir photo",
            "a 12 year old in lingerie",
            "a twelve-year-old, sensual",
            "14yo nude",
            "15 y/o sexy",
            "t33n n4k3d",
            "k.i.d n.a.k.e.d",
            "a raped child",
            "child porn",
            "a naked, decapitated child", // violence too, but CSAM first
        ] {
            assert_blocked(&c, p, Category::Csam);
            assert_eq!(c.check(p).score(Category::Csam), 1.0, "{p}");
        }
        assert_eq!(
            c.check("a naked child").matched_rule,
            Some(RULE_MINOR_SEXUAL)
        );
        assert_eq!(c.check("child porn").matched_rule, Some("csam.phrase"));
        // Minors alone, adults with sexual terms, and ages over 18 are not CSAM.
        assert_pass(&c, "a child reading a book");
        assert_pass(&c, "a 12 year old whisky in a glass");
        assert_blocked(&c, "a 25 year old naked man", Category::Nsfw);
        assert_blocked(&c, "18yo nude", Category::Nsfw);
        assert_pass(&c, "a sultry jazz singer in a minor key");
        assert_pass(&c, "a kid in a bikini at the beach");
        assert_pass(&c, "a steamy bowl of soup for the kids");
        let v = c.check("children at a birthday party");
        assert!(v.score(Category::Csam) > 0.0 && v.score(Category::Csam) < 0.5);
    }

    #[test]
    fn safety_precedence_among_categories() {
        let c = clf();
        assert_blocked(&c, "a naked and tortured man", Category::Violence);
        assert_blocked(&c, "nazi salute, nude", Category::Hate);
        assert_blocked(&c, "suicide, nude", Category::SelfHarm);
        assert_blocked(&c, "a suicide bomber", Category::Violence);
    }

    #[test]
    fn safety_extra_blocklist() {
        let extra = vec![
            (Category::Hate, "Zorblax".to_string()),
            (Category::Violence, "exploding heads".to_string()),
            (Category::Nsfw, "fleshpot".to_string()),
            (Category::Nsfw, "  ".to_string()),
        ];
        let c = PromptClassifier::new(&extra);
        let v = c.check("a zorblax banner");
        assert_eq!(v.blocked, Some(Category::Hate));
        assert_eq!(v.matched_rule, Some("hate.extra"));
        assert_blocked(&c, "z0rbl4x", Category::Hate);
        assert_blocked(&c, "a scene of exploding-heads", Category::Violence);
        assert_eq!(
            c.check("exploding heads").matched_rule,
            Some("violence.extra")
        );
        // Extra NSFW terms count as sexual for the CSAM rule.
        assert_blocked(&c, "a fleshpot with a teen", Category::Csam);
        // The built-in lists are still there; the default classifier lacks the extras.
        assert_blocked(&c, "naked", Category::Nsfw);
        assert_pass(&clf(), "a zorblax banner");
        assert_pass(&c, "a zorb ball");
    }

    #[test]
    fn safety_verdict_shape_and_rule_ids() {
        let c = clf();
        let v = c.check("a lighthouse");
        assert_eq!(v.blocked, None);
        assert_eq!(v.matched_rule, None);
        assert!(!v.is_blocked());
        let cats: Vec<Category> = v.scores.iter().map(|(c, _)| *c).collect();
        assert_eq!(cats, Category::ALL.to_vec());
        assert!(v.scores.iter().all(|(_, s)| *s == 0.0));
        for p in [
            "naked",
            "blow job",
            "n.a.k.e.d",
            "a naked child",
            "child porn",
            "gore and carnage, decapitated",
            "",
            "   ",
            "!!!",
        ] {
            let v = c.check(p);
            if let Some(r) = v.matched_rule {
                assert!(RULE_IDS.contains(&r), "{r}");
            }
            assert!(v.scores.iter().all(|(_, s)| (0.0..=1.0).contains(s)));
        }
        for r in RULE_IDS {
            let cat = r.split('.').next().unwrap();
            assert!(Category::parse(cat).is_some(), "{r}");
        }
    }

    #[test]
    fn safety_category_names_and_serde() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Category>(&json).unwrap(), c);
        }
        assert_eq!(Category::SelfHarm.as_str(), "self_harm");
        assert_eq!(Category::parse("selfharm"), None);
        let json = serde_json::to_value(clf().check("naked")).unwrap();
        assert_eq!(json["blocked"], "nsfw");
        assert_eq!(json["matched_rule"], "nsfw.term");
    }

    #[test]
    fn safety_accent_folding_table() {
        let folded = |s: &str| {
            let t = tokenize(s);
            t.toks
                .iter()
                .map(|k| t.s(k).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(folded("Łódź Żółć"), vec!["lodz", "zolc"]);
        assert_eq!(
            folded("Straße ŒUVRE Ærø"),
            vec!["strasse", "oeuvre", "aero"]
        );
        assert_eq!(folded("İstanbul ığdır"), vec!["istanbul", "igdir"]);
        assert_eq!(folded("Ŵŷŝ ħđ"), vec!["wys", "hd"]);
        assert_eq!(folded("l33t 1337 h4x0r"), vec!["leet", "1337", "haxor"]);
        assert_eq!(folded("日本語 text"), vec!["日本語", "text"]);
    }

    #[test]
    fn safety_is_fast() {
        let c = clf();
        let long = EVERYDAY.join(", "); // ~2 kB
        let mut prompts: Vec<String> = EVERYDAY.iter().map(|s| s.to_string()).collect();
        prompts.push(long.clone());
        prompts.push("n a k e d ".repeat(50));
        prompts.push("a ".repeat(500));
        prompts.push("naaaaaaaaaaaaaked ".repeat(50));
        let rounds = 20;
        let start = std::time::Instant::now();
        let mut blocked = 0;
        for _ in 0..rounds {
            for p in &prompts {
                blocked += c.check(p).is_blocked() as usize;
            }
        }
        let per = start.elapsed() / (rounds * prompts.len()) as u32;
        eprintln!("prompt check: {per:?} per prompt");
        assert_eq!(blocked, rounds * 2);
        // Release builds run well under 50 us; debug builds are several times slower.
        let budget = if cfg!(debug_assertions) { 500 } else { 50 };
        assert!(per.as_micros() < budget, "{per:?} per prompt");
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            c.check(&long);
        }
        let per_long = start.elapsed() / rounds as u32;
        eprintln!("prompt check: {per_long:?} per 2 kB prompt");
        assert!(
            per_long.as_micros() < budget * 10,
            "{per_long:?} per 2 kB prompt"
        );
    }
}
