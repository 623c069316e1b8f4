#!/usr/bin/env python3
"""Writes prometheus/consoles/runbooks.html from docs/runbooks.md.

The notifications' runbook links must open something in a NOC with no internet, so the
stack serves its runbooks itself: Prometheus serves the files of --web.console.templates
at /consoles/, and this page, one section per alert with the anchor docs/runbooks.md has
on GitHub (#pingtargetdown), is one of them. docs/runbooks.md stays the one place to edit.

    scripts/runbooks.py           write the page
    scripts/runbooks.py --check   exit 1 if the page is not what docs/runbooks.md makes

The Markdown this understands is what docs/runbooks.md uses: headings, paragraphs, `-`
lists (continuation lines indented), fenced code, `code`, **bold**, [links](url). Anything
else (tables, numbered lists, HTML) stops it with the line, rather than showing the
operator a garbled page.
"""

import html
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "runbooks.md"
PAGE = ROOT / "prometheus" / "consoles" / "runbooks.html"


class Unsupported(Exception):
    pass


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def inline(text):
    """Escaped text with `code`, **bold** and [links](url)."""
    out, pos = [], 0
    pattern = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
    for m in pattern.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
        elif m.group(2) is not None:
            out.append(f"<strong>{inline(m.group(2))}</strong>")
        else:
            label, url = m.group(3), m.group(4)
            # A link to another runbook section stays on this page.
            if url.startswith(("runbooks.md#", "docs/runbooks.md#")):
                url = url[url.index("#"):]
            if not re.match(r"^(https?://|#)", url):
                raise Unsupported(f"link to {url!r}: only http(s) URLs and #anchors open from this page")
            out.append(f'<a href="{html.escape(url)}">{inline(label)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def render(markdown):
    """(title, [(anchor, heading)], body HTML) of the Markdown text."""
    lines = markdown.splitlines()
    body, toc, title = [], [], "Runbooks"
    anchors = set()
    para, items = [], []
    i = 0

    def flush():
        if para:
            body.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()
        if items:
            body.append("<ul>\n" + "\n".join(f"<li>{inline(' '.join(it))}</li>" for it in items) + "\n</ul>")
            items.clear()

    while i < len(lines):
        line = lines[i]
        n = i + 1
        i += 1
        try:
            if not line.strip():
                flush()
                continue
            if line.startswith("```"):
                flush()
                code = []
                while i < len(lines) and not lines[i].startswith("```"):
                    code.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise Unsupported("code fence never closed")
                i += 1
                body.append("<pre>" + html.escape("\n".join(code), quote=False) + "</pre>")
                continue
            m = re.match(r"^(#{1,3}) (.+)$", line)
            if m:
                flush()
                level, text = len(m.group(1)), m.group(2).strip()
                if level == 1:
                    title = text
                    continue
                anchor = slug(text)
                if anchor in anchors:
                    raise Unsupported(f"heading {text!r} repeats the anchor #{anchor}")
                anchors.add(anchor)
                if level == 2:
                    toc.append((anchor, text))
                body.append(f'<h{level} id="{anchor}"><a href="#{anchor}">{inline(text)}</a></h{level}>')
                continue
            if line.startswith("- "):
                if para:
                    flush()
                items.append([line[2:].strip()])
                continue
            if items and line.startswith("  "):
                items[-1].append(line.strip())
                continue
            if re.match(r"^\s*(\||\d+\.\s|<|>|\* |    )", line):
                raise Unsupported(f"unsupported Markdown: {line.strip()[:60]!r}")
            if items:
                flush()
            para.append(line.strip())
        except Unsupported as e:
            raise Unsupported(f"{SOURCE.relative_to(ROOT)} line {n}: {e}") from None
    flush()
    return title, toc, "\n".join(body)


TEMPLATE = """<!DOCTYPE html>
<!-- Made by scripts/runbooks.py from docs/runbooks.md: edit that, then run the script. -->
<!-- Prometheus serves this file at /consoles/runbooks.html (--web.console.templates). -->
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 1rem auto; padding: 0 1rem; color: #1b1b1b; }}
h2 {{ margin-top: 2.2rem; border-top: 1px solid #ccc; padding-top: 1rem; }}
h2 a, h3 a {{ color: inherit; text-decoration: none; }}
h2:target {{ background: #fff3c4; }}
code, pre {{ font: 14px ui-monospace, monospace; background: #f2f2f2; padding: 0 .2em; }}
pre {{ padding: .6em; overflow-x: auto; }}
nav {{ columns: 2; font-size: 15px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<nav>
{toc}
</nav>
{body}
</body>
</html>
"""


def page(markdown):
    title, toc, body = render(markdown)
    toc_html = "\n".join(f'<a href="#{a}">{inline(t)}</a><br>' for a, t in toc)
    text = TEMPLATE.format(title=html.escape(title, quote=False), toc=toc_html, body=body)
    # Prometheus reads the page as a Go template: literal braces must not start an action.
    return text.replace("{{", '{{ "{{" }}')


def main(argv):
    try:
        text = page(SOURCE.read_text())
    except Unsupported as e:
        print(f"runbooks.py: {e}", file=sys.stderr)
        return 1
    if argv[1:] == ["--check"]:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is not what {SOURCE.relative_to(ROOT)} makes: run scripts/runbooks.py",
                  file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
