"""Long answers split into code sections on whole lines, within Slack's section limit."""

from __future__ import annotations

from bot.slack.blocks import SECTION_MAX, code_sections


def test_a_long_listing_is_split_on_whole_lines_and_says_what_it_left_out() -> None:
    lines = [f"line {i:05d} " + "x" * 60 for i in range(1000)]
    head = code_sections(lines)
    tail = code_sections(lines, keep="tail")
    for blocks in (head, tail):
        *sections, note = blocks
        assert len(sections) == 6
        assert all(len(s) <= SECTION_MAX for s in sections)
        shown = [line for s in sections for line in s.strip("`").split("\n")]
        assert all(line in lines for line in shown)  # whole lines only
        assert (
            note
            == f"_showing the {'first' if blocks is head else 'last'} {len(shown)} of 1000 lines_"
        )
    assert head[0].startswith("```line 00000 ")
    assert tail[-2].endswith("line 00999 " + "x" * 60 + "```")  # logs: the latest lines


def test_a_short_listing_is_one_section_with_nothing_left_out() -> None:
    assert code_sections(["a", "b"]) == ["```a\nb```"]
    assert code_sections([]) == ["``` ```"]
