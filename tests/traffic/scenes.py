"""The machinery of the scenario family: time shapes, arrivals, networks and
the scenario builders, with every piece of text supplied by a :class:`Texts`.

``family.py`` and ``heldout.py`` each hold their own ``Texts`` (templates,
phrasings, vocabularies, user agents written separately), so a detector fit
on one is checked on wording it never saw. Everything random comes from the
draw's two generators, so draw ``i`` of seed ``s`` is the same byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faker.providers.lorem.en_US import Provider as _En
from faker.providers.lorem.es_ES import Provider as _Es
from faker.providers.lorem.fa_IR import Provider as _Fa
from faker.providers.lorem.ja_JP import Provider as _Ja
from faker.providers.lorem.zh_CN import Provider as _Zh

from tests.traffic.generator import T0, KeySpec, Traffic

DAY = 86400.0
MINUTES_PER_DAY = 1440
LANGUAGES = ("en", "zh", "ja", "fa", "es")
_WORDS = {"en": _En.word_list, "zh": _Zh.word_list, "ja": _Ja.word_list, "fa": _Fa.word_list, "es": _Es.word_list}
_JOIN = {"en": " ", "zh": "", "ja": "", "fa": " ", "es": " "}
_END = {"en": ".", "zh": "。", "ja": "。", "fa": ".", "es": "."}
ACTED = ("rotate", "suspend", "revoke")


def vocabulary(lang: str, part: int) -> list[str]:
    """Real words of a language (Faker's lorem lists), split in two halves by
    position so the family and the held-out part never share a word list."""
    words = sorted(set(_WORDS[lang]))
    return [w for i, w in enumerate(words) if i % 2 == part and w.strip()]


@dataclass
class FamilyKey(KeySpec):
    """A generator ``KeySpec`` plus what rates per key-day need."""

    kind: str = "benign"
    days: float = 0.0  # days the key was active in the draw (from creation to the end)
    created: float = T0


@dataclass(frozen=True)
class Texts:
    """All wording of one part (family or held-out). ``{q}`` is the fill."""

    vocab_part: int
    product_templates: tuple[str, ...]  # chat apps wrapping short user input
    small_fills: dict[str, tuple[str, ...]]  # per language, "{w}" = a word of a small vocabulary
    openers: dict[str, tuple[str, ...]]
    tutoring: dict[str, tuple[str, ...]]  # step-by-step phrasings, "{q}"
    batch_instructions: tuple[str, ...]
    service_templates: tuple[str, ...]
    shared_system_prompts: tuple[str, ...]
    research_preambles: tuple[str, ...]
    code_requests: tuple[str, ...]
    session_openers: tuple[str, ...]  # multi-turn: the conversation start
    harvest_templates: tuple[str, ...]  # volumetric extraction sweeps
    reasoning: dict[str, tuple[str, ...]]  # reasoning-trace elicitation per language
    cluster_tasks: tuple[str, ...]
    paraphrase_parts: tuple[tuple[str, ...], ...]  # slots of synonyms, reordered per prompt
    leak_styles: tuple[str, ...]
    app_uas: tuple[str, ...]  # "{v}" = a version
    sdk_uas: tuple[str, ...]  # common SDK clients, shared by many owners
    attacker_uas: tuple[str, ...]
    cluster_uas: tuple[str, ...]


@dataclass
class Kinds:
    """How many keys of each benign kind (before ``scale``)."""

    counts: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "chat-template": (18, 28),
            "chat-diverse": (8, 14),
            "multi-turn": (4, 8),
            "tutoring": (4, 7),
            "batch-nightly": (3, 5),
            "service-fixed": (4, 7),
            "office-move": (1, 3),
            "shared-system-prompt": (5, 10),
            "research-long": (2, 4),
            "code-assistant": (4, 7),
        }
    )


BENIGN_KINDS = tuple(Kinds().counts)
ATTACK_KINDS = ("volumetric", "low-slow-reasoning", "cluster", "leaked", "reseller", "paraphrased")


class World:
    def __init__(self, seed: int, index: int, texts: Texts, scale: float, heldout: bool) -> None:
        mix = [seed, index, 1 if heldout else 0]
        self.rng = random.Random(f"{seed}/{index}/{mix[2]}")
        self.np = np.random.default_rng(mix)
        self.t = texts
        self.scale = scale
        self.days = self.rng.choice((4, 5))
        self.end = T0 + self.days * DAY
        self.minutes = np.arange(self.days * MINUTES_PER_DAY)
        self.vocab = {lang: vocabulary(lang, texts.vocab_part) for lang in LANGUAGES}
        self.traffic = Traffic(seed=seed, days=self.days)
        self.events = self.traffic.events
        self._nets: set[str] = set()
        self._owner = 0

    # -------------------------------------------------------- building blocks --

    def network(self) -> str:
        """A /24 no other key of the draw uses."""
        while True:
            net = f"{self.rng.randint(11, 223)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}"
            if net not in self._nets:
                self._nets.add(net)
                return net

    def random_net(self) -> str:
        """A /24 of a residential-proxy pool: drawn anew, not remembered."""
        r = self.rng.getrandbits(24)
        return f"{(r >> 16) % 200 + 24}.{(r >> 8) & 255}.{r & 255}"

    def owner(self, stem: str) -> str:
        self._owner += 1
        return f"{stem}-{self._owner:03d}"

    def key(self, name: str, profile: str, scenario: str, kind: str, created: float = T0) -> FamilyKey:
        spec = FamilyKey(
            name=f"{name}-{len(self.traffic.keys):03d}",
            owner=self.owner(name.split("/")[0]),
            profile=profile,
            scenario=scenario,
            attacked=kind != "benign",
            kind=kind,
            days=(self.end - created) / DAY,
            created=created,
        )
        self.traffic.keys.append(spec)
        return spec

    def words(self, lang: str, low: int, high: int, vocab: list[str] | None = None) -> str:
        v = vocab or self.vocab[lang]
        return _JOIN[lang].join(self.rng.choice(v) for _ in range(self.rng.randint(low, high)))

    def sentence(self, lang: str, low: int = 5, high: int = 14) -> str:
        return self.words(lang, low, high) + _END[lang]

    def diverse(self, lang: str) -> str:
        rng = self.rng
        body = _JOIN[lang].join(self.sentence(lang) for _ in range(rng.randint(1, 4)))
        return rng.choice(self.t.openers[lang]) + body

    def ua(self, pool: tuple[str, ...]) -> str:
        return self.rng.choice(pool).format(v=f"{self.rng.randint(0, 9)}.{self.rng.randint(0, 40)}")

    # ------------------------------------------------------------- rates --

    def shape(
        self,
        peak: float,
        *,
        tz: float | None = None,
        growth: float = 0.0,
        weekend: float | None = None,
        night: float | None = None,
        bursts: int = 0,
        start: float = T0,
    ) -> np.ndarray:
        """Requests per minute over the draw: office hours in a time zone,
        quieter weekends, daily growth, and a few bursts (demo days, launches)."""
        rng = self.rng
        tz = rng.uniform(-10, 10) if tz is None else tz
        weekend = rng.uniform(0.15, 0.7) if weekend is None else weekend
        night = rng.uniform(0.01, 0.12) if night is None else night
        local = self.minutes / 60.0 + tz
        hour = local % 24.0
        dow = (local // 24.0).astype(int) % 7  # T0 is a Sunday
        bump = np.clip(np.sin((hour - 8.0) / 11.0 * np.pi), 0.0, None)
        week = np.where((dow == 0) | (dow == 6), weekend, 1.0)
        rate: np.ndarray = (
            peak * (night + (1 - night) * bump) * week * (1.0 + growth) ** (self.minutes / 1440.0 - self.days)
        )
        for _ in range(bursts):
            at = rng.randint(0, len(self.minutes) - 200)
            rate[at : at + rng.randint(60, 180)] *= rng.uniform(5, 30)
        rate[self.minutes < (start - T0) / 60.0] = 0.0
        return rate

    def flat(self, per_minute: float, start: float, end: float) -> np.ndarray:
        rate = np.zeros(len(self.minutes))
        a, b = int((start - T0) // 60), int((end - T0) // 60)
        rate[max(a, 0) : max(b, 0)] = per_minute
        return rate

    def arrivals(self, rate: np.ndarray) -> list[float]:
        # a small scale also thins every stream, so tests get a small world
        counts = self.np.poisson(np.maximum(rate, 0.0) * min(1.0, self.scale))
        base = np.repeat(T0 + self.minutes * 60.0, counts)
        ts = np.sort(base + self.np.random(len(base)) * 60.0)
        return [round(x, 3) for x in ts.tolist()]

    # -------------------------------------------------------------- events --

    def emit(
        self,
        key: FamilyKey,
        times: list[float],
        prompt: Callable[[], str],
        *,
        net: Callable[[float], str] | str,
        ua: Callable[[float], str] | str,
        out_ratio: tuple[float, float] = (0.3, 2.0),
        out_cap: int = 4000,
        system_tokens: int = 0,
        duration_per_token: float = 15.0,
        attack: bool = False,
    ) -> None:
        rng = self.rng
        for ts in times:
            text = prompt()
            tokens_in = system_tokens + max(3, len(text.encode()) // 4)
            tokens_out = max(1, min(out_cap, int(tokens_in * rng.uniform(*out_ratio))))
            where = net if isinstance(net, str) else net(ts)
            event: dict[str, Any] = {
                "ts": ts,
                "_key": key.name,
                "ip": f"{where}.{rng.randint(2, 250)}",
                "endpoint": "/v1/messages",
                "status": 200 if rng.random() > 0.01 else rng.choice((429, 500, 400)),
                "duration_ms": int(300 + tokens_out * duration_per_token * rng.uniform(0.6, 1.6)),
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "prompt": text,
                "user_agent": ua if isinstance(ua, str) else ua(ts),
            }
            if attack:
                event["_attack"] = True
                if key.attack_start is None or ts < key.attack_start:
                    key.attack_start = ts
            self.events.append(event)


def _lang(rng: random.Random) -> str:
    return rng.choices(LANGUAGES, weights=(5, 2, 1.5, 1, 1.5))[0]


def _peak(rng: random.Random, low: float = 0.05, high: float = 3.0) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _ordinary(w: World, peak: float | None = None, **kw: Any) -> np.ndarray:
    rng = w.rng
    return w.shape(
        _peak(rng) if peak is None else peak,
        growth=rng.choice((0.0, 0.0, rng.uniform(0, 1.0))),
        bursts=rng.choice((0, 0, 0, 1, 2)),
        **kw,
    )


# ------------------------------------------------------------------ benign --


def benign(w: World, kind: str) -> None:
    rng, t = w.rng, w.t
    lang = _lang(rng)
    app_ua = w.ua(t.app_uas)
    net = w.network()
    if kind == "chat-template":
        key = w.key("chat/widget", "interactive", kind, "benign")
        template = rng.choice(t.product_templates)
        fills = t.small_fills[lang]
        small = rng.sample(w.vocab[lang], min(len(w.vocab[lang]), rng.randint(15, 300)))
        span = (1, rng.randint(1, 4))

        def chat() -> str:
            q = rng.choice(fills).format(w=w.words(lang, *span, vocab=small))
            return template.format(q=q)

        w.emit(key, w.arrivals(_ordinary(w)), chat, net=net, ua=app_ua, out_ratio=(0.5, 6.0))
    elif kind == "chat-diverse":
        key = w.key("chat/app", "interactive", kind, "benign")
        w.emit(key, w.arrivals(_ordinary(w)), lambda: w.diverse(lang), net=net, ua=app_ua, out_ratio=(0.5, 8.0))
    elif kind == "multi-turn":
        key = w.key("chat/sessions", "interactive", kind, "benign")
        state: dict[str, Any] = {"history": "", "turns": 0}

        def turn() -> str:
            if state["turns"] == 0 or rng.random() < 0.15:
                state["history"] = rng.choice(t.session_openers).format(q=w.sentence(lang))
                state["turns"] = 0
            state["turns"] += 1
            state["history"] += "\n" + w.sentence(lang, 10, 40) + "\n" + w.diverse(lang)
            return str(state["history"][-60000:])

        w.emit(key, w.arrivals(_ordinary(w)), turn, net=net, ua=app_ua, out_ratio=(0.02, 0.4))
    elif kind == "tutoring":
        key = w.key("edu/tutor", "interactive", kind, "benign")
        phr = t.tutoring[lang]
        share = rng.uniform(0.4, 0.95)

        def tutor() -> str:
            return rng.choice(phr).format(q=w.sentence(lang, 6, 20)) if rng.random() < share else w.diverse(lang)

        w.emit(key, w.arrivals(_ordinary(w)), tutor, net=net, ua=app_ua, out_ratio=(1.0, 10.0))
    elif kind == "batch-nightly":
        key = w.key("data/nightly", "batch", kind, "benign")
        instruction = rng.choice(t.batch_instructions)
        per_min = rng.uniform(10, 40) * max(1.0, w.scale)
        hour = rng.uniform(0, 5)
        rate = np.zeros(len(w.minutes))
        for day in range(w.days):
            start = T0 + day * DAY + hour * 3600 + rng.uniform(0, 1800)
            rate += w.flat(per_min, start, start + rng.uniform(0.7, 2.0) * 3600)
        w.emit(
            key,
            w.arrivals(rate),
            lambda: instruction.format(q=w.words(lang, 40, 160)),
            net=net,
            ua=app_ua,
            out_ratio=(0.05, 0.4),
            duration_per_token=40.0,
        )
    elif kind == "service-fixed":
        key = w.key("svc/pipeline", "service", kind, "benign")
        templates = rng.sample(t.service_templates, rng.randint(1, 3))
        rate = w.shape(_peak(rng, 0.2, 2.5), night=rng.uniform(0.3, 1.0), weekend=rng.uniform(0.5, 1.0))
        w.emit(
            key,
            w.arrivals(rate),
            lambda: rng.choice(templates).format(q=w.words(lang, 8, 40)),
            net=net,
            ua=app_ua,
            out_ratio=(0.05, 0.5),
        )
    elif kind == "office-move":
        key = w.key("ops/office", "interactive", kind, "benign")
        move = T0 + rng.uniform(1.0, w.days - 0.5) * DAY
        new_net, new_ua = w.network(), w.ua(t.app_uas)
        w.emit(
            key,
            w.arrivals(_ordinary(w, _peak(rng, 0.2, 3.0))),
            lambda: w.diverse(lang),
            net=lambda ts: net if ts < move else new_net,
            ua=lambda ts: app_ua if ts < move else new_ua,
            out_ratio=(0.5, 6.0),
        )
    elif kind == "shared-system-prompt":
        raise AssertionError("built by shared_system_prompt()")
    elif kind == "research-long":
        key = w.key("lab/research", "interactive", kind, "benign")
        pre = rng.choice(t.research_preambles)
        w.emit(
            key,
            w.arrivals(_ordinary(w, _peak(rng, 0.05, 0.8))),
            lambda: pre.format(q=w.diverse(lang) + " " + w.words(lang, 200, 900)),
            net=net,
            ua=app_ua,
            out_ratio=(0.5, 3.0),
            out_cap=8000,
        )
    elif kind == "code-assistant":
        key = w.key("dev/code", "interactive", kind, "benign")
        w.emit(
            key,
            w.arrivals(_ordinary(w)),
            lambda: rng.choice(t.code_requests).format(q=w.words(lang, 3, 12)),
            net=net,
            ua=app_ua,
            out_ratio=(5.0, 30.0),
            out_cap=6000,
        )
    else:
        raise ValueError(kind)


def shared_system_prompt(w: World, owners: int) -> None:
    """One open-source system prompt, several unrelated owners and networks."""
    rng, t = w.rng, w.t
    prompt = rng.choice(t.shared_system_prompts)
    for _ in range(owners):
        lang = _lang(rng)
        key = w.key("oss/assistant", "interactive", "shared-system-prompt", "benign")
        w.emit(
            key,
            w.arrivals(_ordinary(w)),
            lambda lang=lang: prompt.format(q=w.diverse(lang)),
            net=w.network(),
            ua=w.ua(t.sdk_uas),
            out_ratio=(0.2, 3.0),
        )


# ----------------------------------------------------------------- attacks --


def _attack_time(w: World) -> float:
    return T0 + w.rng.uniform(3.05, w.days - 0.4) * DAY


def _reasoning_prompt(w: World, lang: str) -> str:
    rng = w.rng
    plang = rng.choice((lang, lang, *w.t.reasoning))
    return rng.choice(w.t.reasoning[plang]).format(q=w.sentence(plang, 6, 16))


def paraphrase(w: World, lang: str) -> str:
    """An extraction prompt whose slots are each drawn from synonyms and put in a random order."""
    rng = w.rng
    parts = [rng.choice(slot) for slot in w.t.paraphrase_parts]
    head, body = parts[0], parts[1:]
    rng.shuffle(body)
    return (head + " " + " ".join(body)).format(q=w.sentence(lang, 6, 14))


def attack(w: World, kind: str) -> None:
    rng, t = w.rng, w.t
    lang = _lang(rng)
    net, app_ua = w.network(), w.ua(t.app_uas)
    if kind == "volumetric":
        key = w.key("research/notebook", "interactive", kind, kind)
        w.emit(key, w.arrivals(_ordinary(w, _peak(rng, 0.1, 2.0))), lambda: w.diverse(lang), net=net, ua=app_ua)
        start = _attack_time(w)
        templates = rng.sample(t.harvest_templates, rng.randint(1, 3))
        rate = w.flat(rng.uniform(15, 80), start, min(w.end, start + rng.uniform(1, 4) * 3600))
        w.emit(
            key,
            w.arrivals(rate),
            lambda: rng.choice(templates).format(q=w.words(lang, 5, 15)),
            net=net,
            ua=app_ua if rng.random() < 0.7 else w.ua(t.attacker_uas),
            out_ratio=(15.0, 60.0),
            out_cap=6000,
            attack=True,
        )
    elif kind == "low-slow-reasoning":
        key = w.key("freelance/helper", "interactive", kind, kind)
        peak = _peak(rng, 0.3, 3.0)
        start = T0 if rng.random() < 0.3 else _attack_time(w) - rng.uniform(0, 0.5) * DAY
        share = rng.uniform(0.25, 0.5)
        rate = _ordinary(w, peak)
        w.emit(key, w.arrivals(rate * (1 - share)), lambda: w.diverse(lang), net=net, ua=app_ua)
        mask = (w.minutes >= (start - T0) / 60.0).astype(float)
        w.emit(
            key,
            w.arrivals(rate * share * mask),
            lambda: _reasoning_prompt(w, lang),
            net=net,
            ua=app_ua,
            out_ratio=(3.0, 20.0),
            attack=True,
        )
    elif kind == "cluster":
        members = max(10, min(40, round(rng.randint(10, 40) * max(w.scale, 0.25))))
        shared_infra = rng.random() < 0.5
        infra = [w.network() for _ in range(rng.randint(2, 5))]
        pool = t.cluster_uas + t.sdk_uas
        uas = rng.sample(pool, rng.randint(3, len(pool)))
        tasks = rng.sample(t.cluster_tasks, rng.randint(2, min(5, len(t.cluster_tasks))))
        born = T0 + rng.uniform(0.5, w.days - 1.5) * DAY
        for _ in range(members):
            created = born + rng.uniform(0, 0.5) * DAY
            key = w.key("signup/acct", "interactive", kind, kind, created=created)
            mlang = rng.choice((lang, lang, "en"))
            rate = w.flat(rng.uniform(0.05, 0.6), created, min(w.end, created + rng.uniform(0.5, 2.0) * DAY))

            def where(ts: float) -> str:
                return rng.choice(infra) if shared_infra and rng.random() < 0.3 else w.random_net()

            w.emit(
                key,
                w.arrivals(rate),
                lambda mlang=mlang: rng.choice(tasks).format(q=w.sentence(mlang, 6, 16)),
                net=where,
                ua=lambda ts: rng.choice(uas).format(v=f"{rng.randint(1, 3)}.{rng.randint(0, 30)}"),
                out_ratio=(5.0, 40.0),
                attack=True,
            )
    elif kind == "leaked":
        profile = rng.choice(("service", "interactive"))
        key = w.key("partner/sync", profile, kind, kind)
        if profile == "service":
            template = rng.choice(t.service_templates)
            w.emit(
                key,
                w.arrivals(w.shape(_peak(rng, 0.3, 3.0), night=0.8, weekend=0.9)),
                lambda: template.format(q=w.words(lang, 8, 30)),
                net=net,
                ua=app_ua,
                out_ratio=(0.05, 0.5),
            )
        else:
            w.emit(key, w.arrivals(_ordinary(w)), lambda: w.diverse(lang), net=net, ua=app_ua)
        start = _attack_time(w)
        thief_net, thief_ua = w.network(), w.ua(t.attacker_uas)
        style = rng.choice(t.leak_styles)
        rate = w.flat(rng.uniform(0.5, 4.0), start, w.end)
        w.emit(
            key,
            w.arrivals(rate),
            lambda: style.format(q=w.diverse("en")),
            net=thief_net,
            ua=thief_ua,
            out_ratio=(2.0, 15.0),
            attack=True,
        )
    elif kind == "reseller":
        profile = rng.choice(("batch", "interactive"))
        key = w.key("reseller/gateway", profile, kind, kind)
        share = rng.uniform(0.2, 0.4)
        rate = _ordinary(w, _peak(rng, 0.5, 4.0) * (3 if profile == "batch" else 1))
        start = T0 if rng.random() < 0.3 else _attack_time(w) - rng.uniform(0, 0.5) * DAY
        w.emit(key, w.arrivals(rate * (1 - share)), lambda: w.diverse(_lang(rng)), net=net, ua=app_ua)
        mask = (w.minutes >= (start - T0) / 60.0).astype(float)
        templates = t.harvest_templates + tuple(x for v in t.reasoning.values() for x in v)
        w.emit(
            key,
            w.arrivals(rate * share * mask),
            lambda: rng.choice(templates).format(q=w.sentence(lang, 6, 14)),
            net=net,
            ua=app_ua,
            out_ratio=(5.0, 30.0),
            attack=True,
        )
    elif kind == "paraphrased":
        key = w.key("analytics/notebook", "interactive", kind, kind)
        w.emit(key, w.arrivals(_ordinary(w, _peak(rng, 0.1, 2.0))), lambda: w.diverse(lang), net=net, ua=app_ua)
        start = _attack_time(w)
        rate = w.flat(rng.uniform(5, 40), start, min(w.end, start + rng.uniform(1, 5) * 3600))
        w.emit(
            key,
            w.arrivals(rate),
            lambda: paraphrase(w, "en"),
            net=net,
            ua=app_ua,
            out_ratio=(10.0, 50.0),
            out_cap=6000,
            attack=True,
        )
    else:
        raise ValueError(kind)


def build(seed: int, index: int, texts: Texts, *, scale: float, heldout: bool) -> Traffic:
    w = World(seed, index, texts, scale, heldout)
    rng = w.rng
    for kind, (low, high) in Kinds().counts.items():
        n = max(1, round(rng.randint(low, high) * scale))
        if kind == "shared-system-prompt":
            shared_system_prompt(w, max(2, n))
            continue
        for _ in range(n):
            benign(w, kind)
    for kind in ATTACK_KINDS:
        for _ in range(1 if kind == "cluster" else rng.randint(1, 2)):
            attack(w, kind)
    w.events.sort(key=lambda e: (e["ts"], e["_key"]))
    return w.traffic
