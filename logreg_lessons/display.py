"""Tables for the book: rows of values shown as a Markdown table in a notebook.

The book has no pandas dependency; a chapter that wants a table of computed numbers builds the
rows in code and returns ``markdown_table(header, rows)`` from a cell whose metadata sets
``mystnb: markdown_format: gfm`` (GitHub-flavoured Markdown, which has tables).
"""


def markdown_table(header, rows):
    """Return a Markdown table that Jupyter and the book render as a real table.

    Parameters
    ----------
    header : sequence of str, length k
        Column titles.
    rows : iterable of sequences, each of length k
        Cell values; each is shown with ``str``, so format numbers before passing them.

    Returns
    -------
    IPython.display.Markdown

    Raises
    ------
    ValueError
        If a row does not have one value per column.
    """
    from IPython.display import Markdown  # imported here: the library itself needs no IPython

    header = [str(title) for title in header]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for i, row in enumerate(rows):
        cells = [str(cell) for cell in row]
        if len(cells) != len(header):
            raise ValueError(
                f"rows[{i}] must have {len(header)} values (one per column of header), "
                f"got {len(cells)}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return Markdown("\n".join(lines))
