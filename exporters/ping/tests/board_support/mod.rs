//! Helpers for the status board tests: a headless Chromium driven over the DevTools
//! protocol, what a tile looks like on screen, and where screenshots go.

#![allow(dead_code)]

pub mod cdp;

use std::path::PathBuf;

use cdp::{Browser, Page};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// The tile colours an operator is told about (README, "Status board").
pub const GREEN: Rgb = [0x1e, 0x7d, 0x34];
pub const YELLOW: Rgb = [0xf2, 0xb9, 0x0c];
pub const RED: Rgb = [0xc3, 0x16, 0x1c];
pub const GREY: Rgb = [0x4a, 0x52, 0x60];
pub const PURPLE: Rgb = [0x6f, 0x42, 0xc1];
pub const WHITE: Rgb = [0xff, 0xff, 0xff];
/// The page's background, which shows through a dimmed tile.
pub const PAGE_BACKGROUND: Rgb = [0x0b, 0x0d, 0x12];

/// `target/test-output/board/`, created if missing: screenshots land here for a human to
/// look at (the folder is gitignored with the rest of `target/`).
pub fn output_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().expect("CARGO_TARGET_TMPDIR has a parent");
    let dir = target.join("test-output").join("board");
    std::fs::create_dir_all(&dir).expect("create test output dir");
    dir
}

/// How one tile looks: the colours the browser computed for it, and the colours drawn on
/// screen inside it (`fill`, just inside its frame, where no text is) and on its frame.
#[derive(Debug)]
pub struct SeenTile {
    pub background: String,
    pub border: String,
    pub fill: Rgb,
    pub frame: Rgb,
}

/// `rgb(r, g, b)`, as `getComputedStyle` writes an opaque colour.
pub fn css(c: Rgb) -> String {
    format!("rgb({}, {}, {})", c[0], c[1], c[2])
}

/// The colour `c` drawn at `opacity` over the page's background.
pub fn dimmed(c: Rgb, opacity: f64) -> Rgb {
    let mix = |i: usize| {
        (f64::from(c[i]) * opacity + f64::from(PAGE_BACKGROUND[i]) * (1.0 - opacity)).round() as u8
    };
    [mix(0), mix(1), mix(2)]
}

/// Whether two drawn colours are the same to the eye (rounding in the compositor aside).
pub fn close(a: Rgb, b: Rgb) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 3)
}

/// The tile of the target called `name`, scrolled into view and looked at. Positions are
/// in document coordinates, which is what a screenshot's clip is measured in.
pub fn seen_tile(browser: &mut Browser, page: &Page, name: &str) -> SeenTile {
    let geometry = browser.eval(
        page,
        &format!(
            r#"(() => {{
                 const t = Array.from(document.querySelectorAll(".tile"))
                   .find(t => t.dataset.target === {name});
                 if (!t) return null;
                 t.scrollIntoView({{block: "center", inline: "center"}});
                 const s = getComputedStyle(t), r = t.getBoundingClientRect();
                 return {{background: s.backgroundColor, border: s.borderLeftColor,
                          border_width: parseFloat(s.borderLeftWidth),
                          left: r.left + window.scrollX, top: r.top + window.scrollY,
                          height: r.height}};
               }})()"#,
            name = serde_json::to_string(name).unwrap()
        ),
    );
    assert!(geometry.is_object(), "no tile for {name}");
    let f = |k: &str| {
        geometry[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {geometry}"))
    };
    let (left, middle, frame) = (f("left"), f("top") + f("height") / 2.0, f("border_width"));
    SeenTile {
        background: geometry["background"].as_str().unwrap().to_string(),
        border: geometry["border"].as_str().unwrap().to_string(),
        fill: browser.pixel(page, left + frame + 3.0, middle),
        frame: browser.pixel(page, left + frame / 2.0, middle),
    }
}

/// Asserts that the tile of `name` is `colour`, both as computed and as drawn, and that
/// it has a white frame exactly when `framed` (down tiles).
pub fn assert_tile_colour(
    browser: &mut Browser,
    page: &Page,
    name: &str,
    colour: Rgb,
    framed: bool,
) {
    let seen = seen_tile(browser, page, name);
    assert_eq!(
        seen.background,
        css(colour),
        "{name}: computed background, {seen:?}"
    );
    assert!(
        close(seen.fill, colour),
        "{name}: drawn {:?}, expected {colour:?}",
        seen.fill
    );
    let frame = if framed { WHITE } else { colour };
    assert!(
        close(seen.frame, frame),
        "{name}: frame drawn {:?}, expected {frame:?}",
        seen.frame
    );
    if framed {
        assert_eq!(seen.border, css(WHITE), "{name}: computed frame");
    }
}
