"""Customer texts for the synthetic CRM (``generate_synthetic(..., texts="en" | "zh" | "mixed")``).

Only when texts are requested: the interactions table then gains a ``text`` column and a kind
``feedback`` (reviews, chat messages, survey comments) at ``FEEDBACK_RATE`` per week while a person
is alive, the same rate before dropout as at any other time, so that only its *tone* tells the
two apart. Tone by event (probabilities of negative / neutral / positive):

* complaint: always negative;
* support ticket: 0.15 / 0.75 / 0.10, and 0.65 / 0.30 / 0.05 in the ``pre_dropout_weeks`` before dropout;
* feedback: 0.08 / 0.32 / 0.60, and 0.75 / 0.20 / 0.05 in the ``SOURING_WEEKS`` (26) before dropout:
  the tone sours months before the complaints of the last ``pre_dropout_weeks`` (8) arrive.

A negative text is about one of :data:`TOPICS`, drawn with weights that drift with the calendar
year (delivery first, then the app, then price), so the report's complaint topics change by period.
Texts are built from short phrase templates (:data:`PHRASES`), in English, Chinese or either
(``mixed``: Chinese with probability 0.5). A separate random stream draws them all, so the rest of
the generated data is the same as without texts.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEEDBACK_RATE", "SOURING_WEEKS", "PHRASES", "TOPICS", "draw_texts", "draw_tones", "feedback_events"]

FEEDBACK_RATE = 0.10  # feedback texts per week while alive
SOURING_WEEKS = 26.0  # feedback turns negative this long before dropout (complaints come later, in the last weeks)
TOPICS = ("delivery", "refund", "quality", "app", "staff", "price")
_TONES = ("negative", "neutral", "positive")
_TONE_P = {
    ("complaint", False): (1.0, 0.0, 0.0), ("complaint", True): (1.0, 0.0, 0.0),
    ("support_ticket", False): (0.15, 0.75, 0.10), ("support_ticket", True): (0.65, 0.30, 0.05),
    ("feedback", False): (0.08, 0.32, 0.60), ("feedback", True): (0.75, 0.20, 0.05),
}

PHRASES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "en": {
        "negative": {
            "delivery": ("my parcel arrived two weeks late", "the courier lost my package", "delivery was late again",
                         "the box arrived damaged"),
            "refund": ("I am still waiting for my refund", "I was charged twice and got no refund",
                       "the refund was rejected without a reason"),
            "quality": ("the product broke after a week", "poor quality, it fell apart", "the item arrived broken"),
            "app": ("the app keeps crashing at checkout", "I cannot log in to the app", "the website is so slow"),
            "staff": ("the staff were rude to me", "support closed my ticket without help",
                      "nobody answers the phone"),
            "price": ("prices went up again, too expensive", "hidden fees at checkout", "the subscription is too expensive"),
        },
        "neutral": {"": ("where is my order?", "can I change my delivery address?", "please send me the invoice",
                         "how do I return an item?", "what are your opening hours?", "please update my phone number")},
        "positive": {"": ("great service, thank you!", "fast delivery and excellent quality",
                          "the support team was very helpful", "love the new collection", "happy with my order",
                          "easy checkout and friendly staff")},
        "closer_negative": ("", " Very disappointed.", " This is unacceptable.", " Terrible.", " I am angry."),
    },
    "zh": {
        "negative": {
            "delivery": ("快递晚了两个星期", "快递把我的包裹弄丢了", "又延迟发货了", "包裹到的时候已经破损"),
            "refund": ("到现在还没退款", "被重复扣款，也没退款", "退款被拒绝了，没有理由"),
            "quality": ("用了一周就坏了", "质量很差，一下就散了", "收到的东西是坏的"),
            "app": ("APP结账时一直闪退", "APP登录不了", "网站太慢了"),
            "staff": ("店员态度恶劣", "客服没解决问题就关了工单", "电话一直没人接"),
            "price": ("又涨价了，太贵了", "结账时有隐藏费用", "会员费太贵了"),
        },
        "neutral": {"": ("我的订单到哪里了？", "可以修改收货地址吗？", "请把发票发给我", "怎么退货？",
                         "你们几点开门？", "请更新我的手机号码")},
        "positive": {"": ("服务很好，谢谢！", "发货快，质量很好", "客服非常耐心，很满意", "很喜欢新款",
                          "这次购物很开心", "结账方便，店员热情")},
        "closer_negative": ("", "，非常失望。", "，无法接受。", "，太差了。", "，很生气。"),
    },
}


def feedback_events(n: int, lo_s: np.ndarray, hi_s: np.ndarray, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(owner, epoch seconds) of feedback events, Poisson at :data:`FEEDBACK_RATE` per week in
    ``[lo_s, hi_s)`` for each of ``n`` persons."""
    span = np.maximum(hi_s - lo_s, 0)
    who = np.repeat(np.arange(n), rng.poisson(FEEDBACK_RATE * span / (7 * 86400)))
    return who, lo_s[who] + np.floor(rng.random(who.size) * span[who]).astype(np.int64)


def draw_tones(kind: np.ndarray, pre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tone per event (index into negative/neutral/positive; -1: no text, e.g. a visit)."""
    tone = np.full(kind.size, -1, dtype=np.int64)
    u = rng.random(kind.size)
    for (k, p), probs in _TONE_P.items():
        rows = (kind == k) & (pre == p)
        cum = np.cumsum(probs)
        tone[rows] = np.minimum(np.searchsorted(cum, u[rows], side="right"), 2)
    return tone


def _topic_weights(year_offset: int) -> np.ndarray:
    w = np.ones(len(TOPICS))
    w[[0, 3, 5][year_offset % 3]] += 4.0  # delivery, then the app, then price dominate
    return w / w.sum()


def draw_texts(tone: np.ndarray, year: np.ndarray, language: str, rng: np.random.Generator) -> np.ndarray:
    """A text per event with a tone (``None`` where ``tone`` is -1), in ``language`` (en, zh, mixed)."""
    if language not in ("en", "zh", "mixed"):
        raise ValueError(f"texts={language!r} should be one of 'en', 'zh', 'mixed' (or None: no texts)")
    m = tone.size
    out = np.full(m, None, dtype=object)
    zh = rng.random(m) < (0.5 if language == "mixed" else float(language == "zh"))
    u_topic, u_phrase, u_close = rng.random(m), rng.random(m), rng.random(m)
    first_year = int(year.min()) if m else 0
    for i in np.flatnonzero(tone >= 0).tolist():
        table = PHRASES["zh" if zh[i] else "en"]
        t = _TONES[tone[i]]
        if t == "negative":
            w = np.cumsum(_topic_weights(int(year[i]) - first_year))
            topic = TOPICS[min(int(np.searchsorted(w, u_topic[i], side="right")), len(TOPICS) - 1)]
            options = table["negative"][topic]
            closers = table["closer_negative"]
            text = options[int(u_phrase[i] * len(options))] + closers[int(u_close[i] * len(closers))]
            if not zh[i]:
                text = text[0].upper() + text[1:]
        else:
            options = table[t][""]
            text = options[int(u_phrase[i] * len(options))]
            if not zh[i]:
                text = text[0].upper() + text[1:]
        out[i] = text
    return out
