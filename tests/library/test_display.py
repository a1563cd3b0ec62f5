"""The book's table helper renders rows as a GitHub-flavoured Markdown table."""

import pytest

from logreg_lessons.display import markdown_table


def test_markdown_table_renders_header_separator_and_rows():
    table = markdown_table(["split", "count"], [("train", 7), ("test", 1.5)])
    assert table.data.splitlines() == [
        "| split | count |",
        "| --- | --- |",
        "| train | 7 |",
        "| test | 1.5 |",
    ]


def test_markdown_table_rejects_a_row_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"rows\[1\] must have 2 values .* got 3"):
        markdown_table(["a", "b"], [(1, 2), (1, 2, 3)])
