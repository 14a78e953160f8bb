"""Published teacher prices, for cost estimates only (the API's own bill is what counts).

USD per million tokens (input, output), from OpenAI's pricing page as of ``PRICE_DATE``. Prices
change: pass ``price_in``/``price_out`` (``--price-in``/``--price-out``) for other models or dates.
"""

from __future__ import annotations

PRICE_DATE = "2025-06"

PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),  # gpt-3.5-turbo-0125, what the alias points to
    "gpt-3.5-turbo-0125": (0.50, 1.50),
    "gpt-3.5-turbo-1106": (1.00, 2.00),
    "gpt-3.5-turbo-0613": (1.50, 2.00),
    "gpt-3.5-turbo-0301": (2.00, 2.00),  # the paper's teacher, at its March 2023 price
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


def price_for(model: str, price_in: float | None = None, price_out: float | None = None):
    """(input, output) USD per million tokens, or None when the model is not in the table.

    A dated model name falls back to its family (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``).
    """
    if price_in is not None and price_out is not None:
        return (price_in, price_out)
    known = PRICES.get(model)
    if known is None:
        family = [k for k in PRICES if model.startswith(k + "-")]
        known = PRICES[max(family, key=len)] if family else None
    if known is None:
        return None
    return (price_in if price_in is not None else known[0], price_out if price_out is not None else known[1])


def estimate_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    price_in: float | None = None,
    price_out: float | None = None,
) -> float | None:
    """Estimated USD for the given token counts, or None for a model with no known price."""
    price = price_for(model, price_in, price_out)
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
