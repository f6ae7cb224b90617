"""docs/cost.md: every resource type of the synthesized templates has a row (billed, with a price, a monthly
figure and its AWS pricing page), or is listed as having no charge of its own; the total adds up."""

from __future__ import annotations

import re
from decimal import Decimal

from cdk.aipm_cdk import constants as c
from tests.cdk.builders import resources
from tests.cdk.conftest import Synthesized

COST = c.REPO_ROOT / "docs" / "cost.md"


def billed_rows() -> list[list[str]]:
    table = COST.read_text().split("## Billed resources", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row] for row in rows]


def free_types() -> set[str]:
    section = COST.read_text().split("## Resources without a charge of their own", 1)[1]
    return set(re.findall(r"`((?:AWS|Custom)::[A-Za-z0-9:]+)`", section))


def test_the_table_is_dated_and_every_row_has_a_price_a_figure_and_a_source() -> None:
    text = COST.read_text()
    assert re.search(r"\*\*As of \d{4}-\d{2}-\d{2}\*\*", text)
    rows = billed_rows()
    assert rows
    for resource_type, what, price, monthly, source in rows:
        assert resource_type.startswith("`AWS::") and what and "$" in price, resource_type
        assert re.fullmatch(r"\$\d+\.\d{2}( \(.*\))?", monthly), (resource_type, monthly)
        assert source.startswith("https://aws.amazon.com/"), (resource_type, source)


def test_the_total_is_the_sum_of_the_rows() -> None:
    figures = [Decimal(row[3].split()[0].lstrip("$")) for row in billed_rows()]
    total = re.search(r"\| \*\*total\*\* \| \| \| \*\*\$([\d.]+)\*\*", COST.read_text())
    assert total and Decimal(total[1]) == sum(figures)


def test_every_resource_type_of_the_template_has_a_row(
    full_stack: Synthesized, scaled_stack: Synthesized
) -> None:
    billed = {row[0].split("`")[1] for row in billed_rows()}
    free = free_types()
    assert not billed & free
    for stack in (full_stack, scaled_stack):
        types = {r["Type"] for r in stack.json["Resources"].values()}
        missing = types - billed - free
        assert not missing, f"docs/cost.md has no row for {sorted(missing)}"
    assert resources(full_stack.template, "AWS::EC2::VPCEndpoint")  # the endpoints row is about something
