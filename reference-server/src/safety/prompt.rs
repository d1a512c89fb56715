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
//! - A phrase also matches with its words run together (`blowjob`, `killyourself`), and so
//!   spelled out letter by letter.
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
use std::hash::{BuildHasherDefault, Hasher};

/// A fast non-cryptographic hasher (FxHash) for the term tables. Their keys are fixed at
/// construction, so prompt text cannot be used to flood them with collisions.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

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
    "x rated",
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
    ("scantily", 0.3),
    ("scantily clad", 0.4),
    ("negligee", 0.3),
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
    ("mutilated", 0.4),
    ("mutilating", 0.4),
    ("mutilation", 0.4),
    ("slaughter", 0.35),
    ("maimed", 0.3),
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
    "power bank",
    "power button",
    "power cable",
    "power cord",
    "power line",
    "power outlet",
    "power plant",
    "power plug",
    "power socket",
    "power station",
    "power strip",
    "power supply",
    "power tool",
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

/// A trie of the single-word terms' squeezed forms: walking it letter by letter says at once
/// whether what has been read so far can still become a term (bounds the search across
/// separators).
#[derive(Debug, Clone)]
struct SqueezedTrie {
    /// Node 0 is the root.
    nodes: Vec<TrieNode>,
    /// The root's children by ASCII code (0: none), the step every start takes.
    root_ascii: [u32; 128],
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    children: Vec<(char, u32)>,
    /// Some term squeezes to exactly the path to this node.
    whole: bool,
}

impl SqueezedTrie {
    fn new() -> Self {
        SqueezedTrie {
            nodes: vec![TrieNode::default()],
            root_ascii: [0; 128],
        }
    }

    fn insert(&mut self, squeezed: &str) {
        let mut node = 0;
        for c in squeezed.chars() {
            node = match self.step(node, c) {
                Some(next) => next,
                None => {
                    let next = self.nodes.len() as u32;
                    self.nodes.push(TrieNode::default());
                    self.nodes[node as usize].children.push((c, next));
                    if node == 0 && c.is_ascii() {
                        self.root_ascii[c as usize] = next;
                    }
                    next
                }
            };
        }
        self.nodes[node as usize].whole = true;
    }

    fn step(&self, node: u32, c: char) -> Option<u32> {
        if node == 0 && c.is_ascii() {
            let next = self.root_ascii[c as usize];
            return (next != 0).then_some(next);
        }
        self.nodes[node as usize]
            .children
            .iter()
            .find(|(k, _)| *k == c)
            .map(|&(_, n)| n)
    }

    fn whole(&self, node: u32) -> bool {
        self.nodes[node as usize].whole
    }
}

/// A walk down the [`SqueezedTrie`] fed one letter at a time, squeezing as it goes.
#[derive(Debug, Clone, Copy)]
struct TrieWalk {
    node: u32,
    prev: Option<char>,
}

impl TrieWalk {
    const START: TrieWalk = TrieWalk {
        node: 0,
        prev: None,
    };

    /// Feeds one letter; `false` once no term can start with what was fed.
    fn feed(&mut self, trie: &SqueezedTrie, c: char) -> bool {
        if self.prev == Some(c) {
            return true;
        }
        self.prev = Some(c);
        match trie.step(self.node, c) {
            Some(n) => {
                self.node = n;
                true
            }
            None => false,
        }
    }
}

/// A multi-word term.
#[derive(Debug, Clone)]
struct Phrase {
    words: Box<[Box<str>]>,
    entry: Entry,
}

/// Everything known about one normalised word, found with a single lookup.
#[derive(Debug, Clone, Default)]
struct Word {
    /// Its entry as a single-word term.
    entry: Option<Entry>,
    /// Indexes of the phrases (in `PromptClassifier::phrases`) it starts.
    phrases: Vec<u32>,
    /// Indexes of the exempt phrases (in `PromptClassifier::exempt`) it starts.
    exempt: Vec<u32>,
}

// ---------------------------------------------------------------------------------------------
// The classifier.

/// The pre-generation prompt classifier: the built-in lists plus configured extra terms.
///
/// Build it once (at start or on config reload) and share it: [`check`](Self::check) takes
/// `&self` and the classifier is `Send + Sync`.
#[derive(Debug, Clone)]
pub struct PromptClassifier {
    /// Words by normalised text: single-word terms, first words of phrases and exemptions.
    words: Map<Box<str>, Word>,
    /// The single-word terms' squeezed forms (bounds the search across separators).
    trie: SqueezedTrie,
    /// Single-word terms by squeezed text (every run collapsed to one letter), for words that
    /// stretch a letter; only terms whose squeezed form has at least 3 letters.
    squeezed: Map<Box<str>, Entry>,
    /// Multi-word terms.
    phrases: Vec<Phrase>,
    /// Phrase indexes by squeezed first word.
    phrase_first_squeezed: Map<Box<str>, Vec<u32>>,
    /// Benign phrases whose words are exempt from every rule.
    exempt: Vec<Box<[Box<str>]>>,
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
            words: Map::default(),
            trie: SqueezedTrie::new(),
            squeezed: Map::default(),
            phrases: Vec::new(),
            phrase_first_squeezed: Map::default(),
            exempt: Vec::new(),
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
                let idx = c.exempt.len() as u32;
                c.words.entry(first.clone()).or_default().exempt.push(idx);
                c.exempt.push(words);
            }
        }
        for (word, info) in &c.words {
            let Some(entry) = &info.entry else { continue };
            let sq: String = collapsed(word, 1).collect();
            c.trie.insert(&sq);
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
                self.add_word(word, &entry);
            }
            _ => {
                // The words run together are a term too (`killyourself`, `k i l l y o u ...`).
                let joined: String = words.concat();
                self.add_word(joined.into_boxed_str(), &entry);
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
                self.words.entry(first).or_default().phrases.push(idx);
                self.phrases.push(Phrase { words, entry });
            }
        }
    }

    /// Adds one single-word term.
    fn add_word(&mut self, word: Box<str>, entry: &Entry) {
        self.max_term_chars = self.max_term_chars.max(word.chars().count());
        self.words
            .entry(word)
            .or_default()
            .entry
            .get_or_insert_with(Entry::default)
            .merge(entry);
    }

    /// Classifies one prompt. Pure; the verdict carries no prompt text.
    pub fn check(&self, prompt: &str) -> PromptVerdict {
        let mut text = tokenize(prompt);
        let found: Vec<Option<&Word>> = text
            .toks
            .iter()
            .map(|t| self.words.get(text.s(t)))
            .collect();
        self.mark_exempt(&mut text, &found);
        let mut acc = Acc::new();
        let (mut c2, mut sq) = (String::new(), String::new());
        for (i, word) in found.iter().enumerate() {
            let t = text.toks[i];
            if t.exempt {
                continue;
            }
            if t.minor_age || age_minor(&text, i) {
                acc.minor = true;
                acc.keep[Category::Csam.idx()] *= 1.0 - MINOR_WEIGHT;
            }
            let s = text.s(&t);
            let stretched = t.run3.then(|| {
                c2.clear();
                c2.extend(collapsed(s, 2));
                sq.clear();
                sq.extend(collapsed(s, 1));
                (c2.as_str(), sq.as_str())
            });
            let entry = match word.and_then(|w| w.entry) {
                Some(e) => Some(e),
                None => self.lookup_variants(s, t.numeric, stretched),
            };
            if let Some(e) = entry {
                acc.apply(&e, How::Term);
            }
            let direct: &[u32] = word.map_or(&[], |w| &w.phrases);
            for &p in direct {
                self.try_phrase(&text, i, p, &mut acc);
            }
            if let Some(forms) = stretched {
                self.match_stretched_phrases(&text, i, direct, forms, &mut acc);
            }
        }
        self.match_letter_runs(&text, &mut acc);
        self.match_split_words(&text, &mut acc);
        acc.finish()
    }

    /// A single word's entry: exact, with a plural `s`, or (for stretched words) collapsed.
    fn lookup(&self, w: &str, numeric: bool, run3: bool) -> Option<Entry> {
        if let Some(e) = self.words.get(w).and_then(|x| x.entry) {
            return Some(e);
        }
        if run3 {
            let c2: String = collapsed(w, 2).collect();
            let sq: String = collapsed(w, 1).collect();
            self.lookup_variants(w, numeric, Some((&c2, &sq)))
        } else {
            self.lookup_variants(w, numeric, None)
        }
    }

    /// The variants [`lookup`](Self::lookup) tries after the exact word; `stretched` holds the
    /// word collapsed to runs of two and squeezed, for words that stretch a letter.
    fn lookup_variants(
        &self,
        w: &str,
        numeric: bool,
        stretched: Option<(&str, &str)>,
    ) -> Option<Entry> {
        if numeric {
            return None;
        }
        if w.len() >= 4 {
            if let Some(e) = w
                .strip_suffix('s')
                .and_then(|stem| self.words.get(stem))
                .and_then(|x| x.entry)
            {
                return Some(e);
            }
        }
        let (c2, sq) = stretched?;
        self.words
            .get(c2)
            .and_then(|x| x.entry)
            .or_else(|| self.squeezed.get(sq).copied())
    }

    /// Phrases whose first word token `i` stretches (`bloooow job`), given its collapsed and
    /// squeezed forms; `direct` were tried already.
    fn match_stretched_phrases(
        &self,
        text: &Text,
        i: usize,
        direct: &[u32],
        (c2, sq): (&str, &str),
        acc: &mut Acc,
    ) {
        let by_c2: &[u32] = self.words.get(c2).map_or(&[], |w| &w.phrases);
        let by_sq: &[u32] = self.phrase_first_squeezed.get(sq).map_or(&[], |v| v);
        for &p in by_c2 {
            if !direct.contains(&p) {
                self.try_phrase(text, i, p, acc);
            }
        }
        for &p in by_sq {
            if !direct.contains(&p) && !by_c2.contains(&p) {
                self.try_phrase(text, i, p, acc);
            }
        }
    }

    fn try_phrase(&self, text: &Text, i: usize, p: u32, acc: &mut Acc) {
        let phrase = &self.phrases[p as usize];
        if words_at(text, i, &phrase.words) {
            acc.apply(&phrase.entry, How::Phrase);
        }
    }

    /// Marks the tokens of benign phrases as exempt (`found`: each token's word, if known).
    fn mark_exempt(&self, text: &mut Text, found: &[Option<&Word>]) {
        for (i, word) in found.iter().enumerate() {
            let Some(word) = word else { continue };
            for &x in &word.exempt {
                let words = &self.exempt[x as usize];
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
        let letter = |t: &Tok| -> Option<char> {
            if t.exempt || t.end - t.start > 4 {
                return None;
            }
            let mut cs = text.s(t).chars();
            let c = cs.next()?;
            cs.next().is_none().then_some(c)
        };
        let mut letters: Vec<char> = Vec::new();
        let mut word = String::new();
        let mut i = 0;
        while i < toks.len() {
            let Some(c) = letter(&toks[i]) else {
                i += 1;
                continue;
            };
            letters.clear();
            letters.push(c);
            let mut j = i + 1;
            while j < toks.len() && toks[j].sep_len <= 3 {
                match letter(&toks[j]) {
                    Some(c) => letters.push(c),
                    None => break,
                }
                j += 1;
            }
            if letters.len() >= 3 {
                self.match_letters(&letters, &mut word, acc);
            }
            i = j;
        }
    }

    /// Every stretch of at least 3 of `letters` (as written: digits not yet undone) that forms
    /// a blocked word. Linear in practice: a start is abandoned as soon as its letters stop
    /// being the beginning of some term.
    fn match_letters(&self, letters: &[char], word: &mut String, acc: &mut Acc) {
        let mapped = |k: usize| leet(letters[k]);
        for s in 0..letters.len() - 2 {
            // Inside a run of one letter, a later start finds nothing an earlier one does not
            // (`x x x x`).
            if s > 0 && mapped(s - 1) == mapped(s) && mapped(s) == mapped(s + 1) {
                continue;
            }
            word.clear();
            let mut walk = TrieWalk::START;
            let (mut digits, mut run, mut run3) = (0, 0, false);
            for (n, &raw) in letters[s..].iter().take(self.max_term_chars).enumerate() {
                let ch = leet(raw);
                digits += usize::from(raw.is_ascii_digit());
                run = if walk.prev == Some(ch) { run + 1 } else { 1 };
                run3 |= run >= 3 && ch.is_alphabetic();
                // Whatever matches (exactly, collapsed or squeezed) squeezes to a squeezed term.
                if !walk.feed(&self.trie, ch) {
                    break;
                }
                word.push(ch);
                // A fourth same letter in a row changes none of the forms looked up.
                if !self.trie.whole(walk.node)
                    || run >= 4
                    || n < 2
                    || !mostly_letters(n + 1 - digits, digits)
                {
                    continue;
                }
                if let Some(e) = self.lookup(word, false, run3) {
                    acc.apply(&e, How::Spaced);
                }
            }
        }
    }

    /// Words split by punctuation without spaces (`nak.ed`, `pen-is`): 2 to 4 pieces glued.
    fn match_split_words(&self, text: &Text, acc: &mut Acc) {
        let toks = &text.toks;
        let glued = |t: &Tok| !t.exempt && !t.sep_ws && t.sep_len <= 2;
        let mut word = String::new();
        'start: for i in 0..toks.len() {
            if toks[i].exempt || i + 1 >= toks.len() || !glued(&toks[i + 1]) {
                continue;
            }
            word.clear();
            let mut walk = TrieWalk::START;
            let (mut letters, mut digits, mut all_single) = (0, 0, true);
            for (k, t) in toks[i..(i + 4).min(toks.len())].iter().enumerate() {
                if k > 0 && !glued(t) {
                    break;
                }
                let piece = text.s(t);
                let mut chars = 0;
                for raw in piece.chars() {
                    let ch = leet(raw);
                    if !walk.feed(&self.trie, ch) {
                        continue 'start;
                    }
                    word.push(ch);
                    chars += 1;
                    digits += usize::from(raw.is_ascii_digit());
                }
                letters += chars;
                all_single &= chars == 1;
                // Letter runs are match_letter_runs' business.
                if k == 0
                    || all_single
                    || !self.trie.whole(walk.node)
                    || !mostly_letters(letters - digits, digits)
                {
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
    /// Where the current word starts in `text.buf`.
    start: usize,
    /// Characters, digits and leetspeak characters in the current word.
    chars: u32,
    digits: u32,
    leet_chars: u32,
    /// The last character and its run length, and whether a letter ran to 3.
    prev: char,
    run: u32,
    run3: bool,
    /// The separator since the last word.
    sep_ws: bool,
    sep_len: u32,
}

impl Tokenizer {
    /// Feeds one lowercased, folded character.
    fn push(&mut self, ch: char) {
        if ch.is_ascii_alphanumeric()
            || ch == '@'
            || ch == '$'
            || (!ch.is_ascii() && ch.is_alphanumeric())
        {
            self.word_char(ch);
        } else {
            self.separator(ch.is_whitespace());
        }
    }

    fn separator(&mut self, whitespace: bool) {
        self.flush();
        self.sep_len = self.sep_len.saturating_add(1);
        self.sep_ws |= whitespace;
    }

    fn word_char(&mut self, ch: char) {
        if self.chars == 0 {
            self.start = self.text.buf.len();
        }
        self.text.buf.push(ch);
        self.chars += 1;
        if ch.is_ascii_digit() {
            self.digits += 1;
        }
        if leet(ch) != ch {
            self.leet_chars += 1;
        }
        if ch == self.prev {
            self.run += 1;
            self.run3 |= self.run >= 3 && ch.is_alphabetic();
        } else {
            self.prev = ch;
            self.run = 1;
        }
    }

    fn flush(&mut self) {
        if self.chars == 0 {
            return;
        }
        let start = self.start;
        let numeric = self.digits == self.chars;
        let raw = &self.text.buf[start..];
        let minor_age = !numeric && raw.as_bytes()[0].is_ascii_digit() && age_suffix_minor(raw);
        let mut run3 = self.run3;
        // `1024`, `53x`, `35mm` are numbers and measurements, not leetspeak.
        if !numeric && self.leet_chars > 0 && mostly_letters(self.chars - self.digits, self.digits)
        {
            let mapped: String = raw.chars().map(leet).collect();
            run3 = has_run(&mapped, 3);
            self.text.buf.truncate(start);
            self.text.buf.push_str(&mapped);
        }
        self.text.toks.push(Tok {
            start: start as u32,
            end: self.text.buf.len() as u32,
            numeric,
            run3,
            sep_ws: self.sep_ws,
            sep_len: self.sep_len,
            minor_age,
            exempt: false,
        });
        self.chars = 0;
        self.digits = 0;
        self.leet_chars = 0;
        self.prev = '\0';
        self.run = 0;
        self.run3 = false;
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
        start: 0,
        chars: 0,
        digits: 0,
        leet_chars: 0,
        prev: '\0',
        run: 0,
        run3: false,
        sep_ws: false,
        sep_len: 0,
    };
    for c in input.chars() {
        if c.is_ascii() {
            let b = c as u8;
            if b.is_ascii_alphanumeric() || b == b'@' || b == b'$' {
                tk.word_char(char::from(b.to_ascii_lowercase()));
            } else {
                tk.separator(b.is_ascii_whitespace());
            }
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
fn mostly_letters<N: PartialOrd>(letters: N, digits: N) -> bool {
    letters >= digits
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

    const EVERYDAY: [&str; 67] = [
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
        "a white power cable on a wooden desk",
        "a sexy red sports car",
        "a bloody mary cocktail",
        "a flock of great tits in the garden",
        "a kid's drawing of a dragon",
        "a 3d render of a robot, 4k, 53x zoom",
        "Ultra HD, 8k, f1.8, 35mm, ISO 100",
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
    fn safety_generator_hazard_lexicon_passes() {
        // The euphemisms the generator is steered by must reach it: the post-generation image
        // check is what catches them.
        let c = clf();
        for (w, _) in crate::compute::HAZARD_LEXICON {
            assert_pass(&c, w);
            assert_pass(&c, &format!("a {w} photograph, studio lighting"));
        }
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
        // Phrases run together, or spelled out.
        assert_blocked(&c, "#killyourself", Category::SelfHarm);
        assert_blocked(&c, "K I L L Y O U R S E L F", Category::SelfHarm);
        assert_blocked(&c, "b.l.o.w.j.o.b", Category::Nsfw);
        assert_blocked(&c, "blooooow job", Category::Nsfw);
        assert_blocked(&c, "x-rated", Category::Nsfw);
        assert_blocked(&c, "childporn", Category::Csam);
        assert_eq!(c.check("n.a.k.e.d").matched_rule, Some("nsfw.spaced"));
        assert_blocked(&c, "n a a a k e d", Category::Nsfw);
        assert_blocked(&c, "x x x x", Category::Nsfw);
        assert_blocked(&c, "see: p-0-r-n", Category::Nsfw);
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
        prompts.push("x ".repeat(1000));
        prompts.push("n.a.k.e.d.".repeat(200));
        prompts.push("aaa ".repeat(500));
        prompts.push("ab-cd-ef-".repeat(220));
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
        // The spaced, stretched, `x x x` and dotted ones at least (the joined one mixes a kid
        // and "sexy").
        assert!(blocked >= rounds * 4, "{blocked}");
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
