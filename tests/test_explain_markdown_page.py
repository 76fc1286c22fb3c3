"""resnetkit's Markdown reports as self-contained HTML pages."""

from matplotlib.figure import Figure

from resnetkit.explain.markdown_page import markdown_to_html, write_markdown_page


def test_headings_lists_tables_code_and_links_become_html(tmp_path):
    text = "\n".join(
        [
            "# Title",
            "Some **bold** and `code` with a [run](runs/a/report.md).",
            "",
            "- one",
            "- two",
            "",
            "| a | b |",
            "| --- | ---: |",
            "| 1 | 2 |",
            "",
            "```bash",
            "resnetkit train <x>",
            "```",
        ]
    )
    body = markdown_to_html(text, tmp_path)
    assert "<h1>Title</h1>" in body and "<b>bold</b>" in body and "<code>code</code>" in body
    assert "<a href='runs/a/report.html'>run</a>" in body
    assert "<ul><li>one</li><li>two</li></ul>" in body
    assert "<tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr>" in body
    assert "<pre>resnetkit train &lt;x&gt;</pre>" in body


def test_local_images_are_embedded_and_remote_ones_never_fetched(tmp_path):
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1])
    figure.savefig(tmp_path / "plot.png")
    (tmp_path / "report.md").write_text(
        "# R\n\n![the plot](plot.png)\n![remote](https://example.com/x.png)\n"
    )
    page = write_markdown_page(tmp_path / "report.md").read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "example.com" not in page
    assert "<title>R</title>" in page
