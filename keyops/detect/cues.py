"""A multilingual lexicon of reasoning-elicitation cues, organised by what a
phrase *asks for*, not by any one wording.

A single maintained list of phrasings (``keyops.detect.patterns``) catches
the phrasings someone wrote down and misses the next paraphrase or the next
language. People who want a model's reasoning as data ask for a few things,
in whatever words and language they use:

* ``R1`` the model's *internal* reasoning as a thing: chain of thought, inner
  monologue, hidden/internal reasoning, scratchpad, reasoning trace
  ("思维链", "思考の連鎖", "사고의 사슬", "cadena de pensamiento", "цепочка
  рассуждений", "زنجیره فکر", "सोच की श्रृंखला");
* ``R2`` reasoning as an object in general: thought process, reasoning
  process, line of reasoning, "your reasoning" ("思考过程", "思考過程",
  "사고 과정", "Gedankengang", "ход мыслей", "فرآیند فکر", "विचार प्रक्रिया");
* ``X`` exposure or completeness: write out, reveal, dump, reconstruct, full,
  complete, every, verbatim ("完整", "すべて", "빠짐없이", "completo",
  "vollständig", "полностью", "کامل", "पूरी");
* ``B`` placement against the answer: before answering, behind the answer,
  final answer ("回答之前", "答える前に", "답하기 전에", "antes de responder",
  "перед ответом", "قبل از پاسخ", "उत्तर देने से पहले");
* ``S`` steps ("step by step", "一步一步", "paso a paso", "шаг за шагом");
* ``V`` verification ("double-check", "验证", "überprüfe", "проверь");
* ``F`` an output scaffold ("Step 1: ... Final answer:");
* ``T`` thinking tags (``<think>``, ``<reasoning>``, ``[thinking]``).

A prompt is *elicitation* (``score >= STRONG_SCORE``) when it names reasoning
as an object (R1 or R2) and asks for it exposed, complete or placed before
the answer: "write out your full chain of thought" (R1 + X), "show all your
reasoning before the final answer" (R2 + X + B), or uses thinking tags. A
request for a worked answer alone ("explain step by step", "show your work",
"explain your reasoning", "think carefully before answering") stays below:
a tutoring product sends those all day. The weights: R1 2, R2 1, X 1, B 1,
F 1, S and V one half each; T alone is enough.

Text is normalised before matching (:func:`normalise`): lowercase, NFKC
(full-width forms, compatibility characters), Latin diacritics removed
("razón" = "razon", "überprüfe" = "uberprufe"), Arabic and Persian letter
variants unified (ي/ی, ك/ک, أ/إ/آ/ا, ة/ه; harakat and tatweel dropped) and
ё as е. Patterns below are written in natural spelling and normalised the
same way when compiled. ASCII text (most prompts) skips normalisation and is
prefiltered by a few substring checks (``_R_ASCII``): without one of them no
R1/R2/T cue can match and the regexes do not run.

``tests/unit/detect/test_cues.py`` holds examples per language and class,
and ordinary requests that must stay below the line.
"""

from __future__ import annotations

import re
import unicodedata

STRONG_SCORE = 3.0
WEIGHTS = {"R1": 2.0, "R2": 1.0, "X": 1.0, "B": 1.0, "F": 1.0, "S": 0.5, "V": 0.5}


def _latin_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in range(0xC0, 0x250):
        ch = chr(cp)
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base != ch and base.isascii() and base:
            table[cp] = base.lower()
    table[ord("ß")] = "ss"
    table[ord("ё")] = "е"
    # Arabic / Persian: one letter per sound, no vowel marks or tatweel.
    for a, b in (("ي", "ی"), ("ى", "ی"), ("ك", "ک"), ("أ", "ا"), ("إ", "ا"), ("آ", "ا"), ("ٱ", "ا"), ("ة", "ه")):
        table[ord(a)] = b
    for cp in [*range(0x064B, 0x0653), 0x0640, 0x0670, 0x200C, 0x200D]:
        table[cp] = " " if cp == 0x200C else ""
    return table


_TABLE = _latin_table()


def normalise(lowered: str) -> str:
    """Lowercased text in the form the cue patterns are written against."""
    if lowered.isascii():
        return lowered
    return unicodedata.normalize("NFKC", lowered).lower().translate(_TABLE)


# Each class: (name, regex) in natural spelling; compiled after normalise().
CUES: dict[str, tuple[tuple[str, str], ...]] = {
    "R1": (
        (
            "en",
            r"\bchain[\s-]*of[\s-]*thoughts?\b|\b(inner|internal|interior)\s+(monologue|dialogue|voice)\b"
            r"|\b(internal|inner|hidden|private|latent|underlying|raw|unfiltered|secret|concealed)\s+"
            r"(reasoning|thoughts?|thinking|deliberations?|chain)\b|\bscratch\s*pad\b|\bscratchpad\b"
            r"|\b(reasoning|thinking|thought)\s+(traces?|tokens|transcripts?|logs?)\b"
            r"|\b(your|its|the\s+model'?s?)\s+(full|complete|entire|whole|raw|unfiltered|exact|detailed)\s+"
            r"(reasoning|thought\s+process|thinking(\s+process)?|rationale|deliberation)\b"
            r"|\bhidden\s+(steps?|parts?|layers?)\s+of\s+(your\s+|the\s+)?(reasoning|thinking|thought)",
        ),
        (
            "zh",
            r"思维链|思考链|推理链|思路链|(内部|内在|内心|隐藏|隐含|潜在|原始)的?(推理|思考|思维|独白)|内心独白"
            r"|你的?(完整|全部|原始|详细)的?(思考|推理|思维)",
        ),
        (
            "ja",
            r"思考の?連鎖|推論の?連鎖|チェーン・?オブ・?ソート|(内部|内面|内心|隠れた|隠された)の?(推論|思考|独白)"
            r"|内なる(声|独白|思考)|内的独白"
            r"|あなたの(すべての|全ての|完全な|詳細な)(思考|推論|考え)",
        ),
        (
            "ko",
            r"(사고|생각|추론)의?\s*(사슬|연쇄|체인)|체인\s*오브\s*소트|(내부|내적|숨겨진|속)\s*(추론|사고|생각|독백)",
        ),
        (
            "es",
            r"\bcadena\s+de\s+(pensamientos?|razonamientos?)\b|\b(razonamiento|pensamiento|monologo)\s+"
            r"(interno|interior|oculto)\b|\b(tu|su)\s+(razonamiento|proceso\s+de\s+pensamiento)\s+(complet|enter|integr)",
        ),
        (
            "pt",
            r"\bcadeia\s+de\s+(pensamentos?|raciocinios?)\b|\b(raciocinio|pensamento|monologo)\s+"
            r"(interno|interior|oculto)\b",
        ),
        (
            "fr",
            r"\bchaine\s+de\s+(pensees?|raisonnements?)\b|\b(raisonnement|monologue|pensee|reflexion)\s+"
            r"(interne|interieure?|cachee?)\b|\b(ton|votre)\s+raisonnement\s+(complet|entier|integral)",
        ),
        (
            "de",
            r"gedankenkette|denkkette|\b(interne[nrsm]?|innere[nrsm]?|verborgene[nrsm]?)\s+"
            r"(gedanken|uberlegungen|argumentation|denkprozess|monolog)",
        ),
        ("ru", r"цепоч\w*\s+(рассуждени|мысл|размышлени)|(внутренн|скрыт)\w*\s+(монолог|рассуждени|мысл|размышлени)"),
        (
            "ar",
            r"سلسل\w*\s+(التفكير|الافكار|الاستدلال|الاستنتاج)|(التفكير|الاستدلال|المونولوج|الحوار)\s+الداخلي"
            r"|تفكيرك\s+الداخلي",
        ),
        ("fa", r"زنجیره(\s+\S+)?\s+(فکر|افکار|تفکر|استدلال)|(استدلال|تفکر|افکار|فکر|مونولوگ)\s+(درونی|داخلی|پنهان)"),
        ("hi", r"(विचार|सोच|तर्क)\s*(की\s*)?(श्रृंखला|शृंखला|श्रंखला)|आंतरिक\s*(तर्क|सोच|विचार|एकालाप)"),
    ),
    "R2": (
        (
            "en",
            r"\b(thought|thinking|reasoning|decision[\s-]making|problem[\s-]solving)\s+process(es)?\b"
            r"|\b(line|train|chain)\s+of\s+(reasoning|thinking|logic)\b|\breasoning\s+steps\b"
            r"|\b(your|its|the\s+model'?s?|the\s+assistant'?s?)\s+(own\s+)?(reasoning|rationale|deliberation)\b"
            r"|\b(full|complete|entire|whole|raw|detailed|exact)\s+(reasoning|thinking|thoughts|rationale)\b"
            r"|\bhow\s+you\s+(arrived|got|came|reached)\b|\bwhat\s+you\s+(thought|were\s+thinking)\b",
        ),
        ("zh", r"(思考|推理|思维|推导|分析)(过程|步骤|轨迹|路径)|思路|你的(推理|思考)"),
        (
            "ja",
            r"(思考|推論|考え|考察)の?(過程|プロセス|流れ|手順|道筋|経路)|あなたの(推論|思考|考え)|どう考えた|どのように考え",
        ),
        ("ko", r"(사고|추론|생각|사유)의?\s*(과정|흐름|단계|절차)|(당신|너|네)의?\s*(추론|사고|생각)|어떻게\s*생각했"),
        (
            "es",
            r"\bproceso\s+(de\s+)?(pensamiento|razonamiento|reflexion|mental)\b|\blinea\s+de\s+razonamiento\b"
            r"|\b(tu|su)\s+razonamiento\b|\bcomo\s+llegaste\b|\bpasos\s+de\s+razonamiento\b",
        ),
        (
            "pt",
            r"\bprocesso\s+(de\s+)?(pensamento|raciocinio|reflexao|mental)\b|\blinha\s+de\s+raciocinio\b"
            r"|\b(seu|teu|o\s+seu)\s+raciocinio\b|\bcomo\s+voce\s+chegou\b",
        ),
        (
            "fr",
            r"\bprocessus\s+de\s+(reflexion|pensee|raisonnement)\b|\b(ton|votre|son)\s+raisonnement\b"
            r"|\bcheminement\b|\bfil\s+de\s+(ta|votre|la)\s+pensee\b|\bcomment\s+(tu\s+es|vous\s+etes)\s+arrive",
        ),
        (
            "de",
            r"denkprozess|gedankengang|gedankengange|denkweg|losungsweg|\b(dein|deine|ihre|ihr|seine)[nrsm]?\s+"
            r"(uberlegungen|argumentation|begrundung|gedanken)\b|\bwie\s+(du|sie)\s+(darauf\s+)?gekommen",
        ),
        (
            "ru",
            r"ход\w*\s+(\w+\s+)?(мысл|рассуждени)|процесс\w*\s+(мышлени|рассуждени|размышлени)|рассуждени\w*|как\s+ты\s+пришел",
        ),
        ("ar", r"(عملیه|طریقه|خطوات)\s+(التفکیر|تفکیرک|الاستدلال)|استدلالک|تفکیرک|کیف\s+توصلت|کیف\s+وصلت"),
        (
            "fa",
            r"(فرایند|فرآیند|روند|مسیر|نحوه)\s+(فکر|تفکر|استدلال|فکری)|استدلال\s*(خود|خودت|ت)|طرز\s+فکر|چطور\s+به\s+.{0,40}رسیدی",
        ),
        ("hi", r"(विचार|सोचने\s*की|तर्क|चिंतन)\s*(प्रक्रिया|क्रम)|(आपका|अपना|तुम्हारा)\s*(तर्क|सोच)|तर्क"),
    ),
    "X": (
        (
            "en",
            r"\b(write|spell|lay|type|print|list|set)\s+(it\s+|them\s+|everything\s+)?(out|down)\b"
            r"|\b(print|output|dump|reveal|expose|disclose|articulate|verbalize|verbalise|transcribe|reconstruct"
            r"|reproduce|externali[sz]e|narrate|unpack)\b|\bshow\s+(me\s+)?(all|every|each|everything)\b"
            r"|\b(full|complete|entire|whole|raw|unabridged|unfiltered|exhaustive|verbatim|uncensored)\b"
            r"|\bin\s+full\b|\bevery\s+(single\s+)?(step|thought|detail|consideration)\b|\ball\s+(of\s+)?(your|its|the)\b"
            r"|\b(don'?t|do\s+not|without)\s+(skip|skipping|omit|omitting|leav\w*\s+out|summari[sz]\w*)\b",
        ),
        (
            "zh",
            r"完整|全部|所有|每一步|每一个|原始|详尽|一字不漏|逐字|写出|写下|输出|展示|呈现|列出|还原|重建|重现|复述|不要省略|毫无保留",
        ),
        (
            "ja",
            r"すべて|全て|全部|完全|詳細に|詳しく|ありのまま|省略せず|省略しない|書き出|出力|示して|見せて|再現|逐一|一つ残らず|包み隠さず",
        ),
        (
            "ko",
            r"모든|모두|전부|전체|완전한|빠짐없이|생략\s*없이|생략하지|그대로|써\s*줘|적어|작성해|출력|보여|드러내|재구성|자세히",
        ),
        (
            "es",
            r"\b(complet[oa]s?|tod[oa]s?|enter[oa]|integr[oa]|detallad[oa]|cada|sin\s+omitir|sin\s+resumir"
            r"|escrib\w*|muestr\w*|revel\w*|expon\w*|reconstru\w*|transcrib\w*|detall\w*)\b",
        ),
        (
            "pt",
            r"\b(complet[oa]s?|tod[oa]s?|inteir[oa]|integral|detalhad[oa]|cada|sem\s+omitir|sem\s+resumir"
            r"|escrev\w*|mostr\w*|revel\w*|expon\w*|reconstru\w*|transcrev\w*|detalh\w*)\b",
        ),
        (
            "fr",
            r"\b(complete?s?|entiere?s?|integral\w*|detaille\w*|tout|tous|toute?s?|chaque|sans\s+rien\s+omettre"
            r"|ecri[sv]\w*|montre\w*|revele\w*|expose\w*|reconstitu\w*|retranscri\w*)\b",
        ),
        (
            "de",
            r"\b(vollstandig\w*|ganze[nrsm]?|gesamte[nrsm]?|alle[nrsm]?|jede[nrsm]?|luckenlos|ungekurzt|wortlich"
            r"|detailliert\w*|schreib\w*|zeig\w*|offenleg\w*|leg\w*\s+offen|rekonstruier\w*|ausfuhrlich\w*)\b",
        ),
        (
            "ru",
            r"полн\w*|цели\w*|весь|всю|все|всё|кажд\w*|подробн\w*|напиш\w*|выпиш\w*|выведи|покажи|раскрой|опиши"
            r"|восстанови|ничего\s+не\s+(пропуская|упуская|опуская)",
        ),
        ("ar", r"کامل|بالکامل|کل|جمیع|اکتب|اعرض|اظهر|اکشف|بالتفصیل|دون\s+حذف|مفصل"),
        ("fa", r"کامل|همه|تمام|تمامی|بنویس|نشان\s+بده|نمایش\s+بده|اشکار|اشکار|بازسازی|با\s+جزئیات|بدون\s+حذف|مفصل"),
        ("hi", r"पूरा|पूरी|पूर्ण|संपूर्ण|सम्पूर्ण|सभी|सारा|सारी|हर|लिखो|लिखें|लिखिए|दिखाओ|दिखाएं|दिखाइए|विस्तार\s*से"),
    ),
    "B": (
        (
            "en",
            r"\bbefore\s+(you\s+)?(answer|respond|reply|giv|writ|stat|provid|output)\w*"
            r"|\bbefore\s+(the|your|giving\s+the|writing\s+the|stating\s+the)\s+(final\s+)?(answer|response|reply|solution|output)"
            r"|\bprior\s+to\s+(answering|responding|replying|your\s+answer)|\bahead\s+of\s+(the|your)\s+answer"
            r"|\b(then|and\s+then|only\s+then|after\s+that|afterwards)[,\s]+(give|state|write|provide|output)?\s*"
            r"(the\s+|your\s+)?(final\s+)?answer\b|\bbehind\s+(the|your|this|that|each|a)\s+(final\s+|completed\s+|given\s+)?"
            r"(answer|response|output|reply|solution|completion)|\b(led|leading|lead)\s+(you\s+)?to\s+(the|your|this|that)\s+"
            r"(answer|conclusion|response)|\bthat\s+(produced|generated|yielded)\s+(the|this|your|that)\s+(answer|response|output)"
            r"|\bfinal\s+answer\b",
        ),
        (
            "zh",
            r"(回答|答案|回复|作答|答复|给出答案)(之前|以前|前)|先.{0,30}(再|然后)(回答|作答|给出|回复)|(答案|回答|回复|结论)背后"
            r"|得出(这个|该|此)?(答案|结论)|最终(答案|回答)",
        ),
        (
            "ja",
            r"(回答|答え|返答)(する|を出す|の)?前に|答える前に|(回答|答え|結論)に至る|最終的?な?(回答|答え)|まず.{0,30}(それから|その後|次に)",
        ),
        (
            "ko",
            r"(답|대답|답변|응답)(하기|을\s*하기|을\s*내기|을\s*제시하기)?\s*전에|최종\s*(답|답변|결론)|결론에\s*(도달|이르)|먼저.{0,30}(그\s*다음|그리고\s*나서)",
        ),
        (
            "es",
            r"\bantes\s+de\s+(responder|contestar|dar\s+la\s+respuesta|la\s+respuesta)|\brespuesta\s+final\b"
            r"|\bdetras\s+de\s+(tu|la|su|cada)\s+respuesta|\bque\s+te\s+llevo\s+a\b|\bluego\s+responde",
        ),
        (
            "pt",
            r"\bantes\s+de\s+(responder|dar\s+a\s+resposta)|\bantes\s+da\s+resposta|\bresposta\s+final\b"
            r"|\bpor\s+tras\s+da\s+(sua\s+)?resposta|\bque\s+(te|o)\s+levou\s+a\b|\bdepois\s+responda",
        ),
        (
            "fr",
            r"\bavant\s+de\s+(repondre|donner\s+(ta|votre|la)\s+reponse)|\bavant\s+(la|ta|votre)\s+reponse"
            r"|\breponse\s+finale\b|\bderriere\s+(ta|votre|la|chaque)\s+reponse|\bqui\s+(t'a|vous\s+a)\s+mene"
            r"|\bpuis\s+reponds",
        ),
        (
            "de",
            r"\bbevor\s+(du|sie)\s+(antwortest|antworten|die\s+antwort)|\bvor\s+(der|deiner|ihrer)\s+"
            r"(endgultigen\s+)?antwort|\b(endgultige|finale)\s+antwort|\bhinter\s+(deiner|der|ihrer|jeder)\s+antwort"
            r"|\bdann\s+(erst\s+)?(die\s+)?antwort",
        ),
        (
            "ru",
            r"(прежде\s+чем|перед\s+тем\s+как)\s+(ответить|отвечать|дать\s+ответ)|перед\s+ответом|до\s+ответа"
            r"|(окончательн|итогов|финальн)\w*\s+ответ|а\s+(потом|затем)\s+(дай\s+)?ответ",
        ),
        (
            "ar",
            r"قبل\s+(الاجابه|الجواب|الرد|ان\s+تجیب|ان\s+ترد|اعطاء)|(الاجابه|الجواب)\s+النهائی|وراء\s+(اجابتک|الاجابه|جوابک|الجواب)",
        ),
        (
            "fa",
            r"(قبل|پیش)\s+از\s+(پاسخ|جواب|دادن|ارائه|اینکه\s+پاسخ|اینکه\s+جواب)|(پاسخ|جواب)\s+نهایی|پشت\s+(پاسخ|جواب)|سپس\s+(پاسخ|جواب)",
        ),
        ("hi", r"(उत्तर|जवाब)\s*(देने\s*)?से\s*पहले|अंतिम\s*(उत्तर|जवाब)|फिर\s*(उत्तर|जवाब)"),
    ),
    "S": (
        (
            "en",
            r"\bstep[\s-]*by[\s-]*step\b|\b(each|every)\s+step\b|\bintermediate\s+(steps|results|calculations)\b"
            r"|\bone\s+step\s+at\s+a\s+time\b|\bwalk\s+(me|us)\s+through\b|\bshow\s+(your|all|the)\s+(work|steps|working)\b",
        ),
        ("zh", r"一步一步|一步步|逐步|分步|每一步|每个步骤|逐条"),
        ("ja", r"ステップ・?バイ・?ステップ|一歩ずつ|一歩一歩|段階的に|順を追って|ステップごと|手順を追って|一つずつ"),
        ("ko", r"단계별|단계적으로|한\s*단계씩|차근차근|하나씩|단계마다"),
        ("es", r"\bpaso\s+a\s+paso\b|\bcada\s+paso\b|\bpasos\s+intermedios\b"),
        ("pt", r"\bpasso\s+a\s+passo\b|\bcada\s+passo\b|\betapa\s+por\s+etapa\b"),
        ("fr", r"\betape\s+par\s+etape\b|\bpas\s+a\s+pas\b|\bchaque\s+etape\b"),
        ("de", r"\bschritt\s+fur\s+schritt\b|\bschrittweise\b|\bjeden\s+schritt\b|\bzwischenschritte\b"),
        ("ru", r"шаг\s+за\s+шагом|пошагово|поэтапно|кажд\w*\s+шаг"),
        ("ar", r"خطوه\s+بخطوه|کل\s+خطوه"),
        ("fa", r"مرحله\s+به\s+مرحله|قدم\s+به\s+قدم|گام\s+به\s+گام|هر\s+(مرحله|گام|قدم)"),
        ("hi", r"(कदम|चरण)\s*(दर|-)\s*(कदम|चरण)|चरणबद्ध|हर\s*(चरण|कदम)|एक-एक\s*करके"),
    ),
    "V": (
        (
            "en",
            r"\bdouble[\s-]*check\b|\bverify\b|\bself[\s-]*(check|critique|reflect|verif)\w*|\bcheck\s+(your|each|every)\b"
            r"|\breflect\s+on\b|\bcritique\s+(your|its)\s+own\b|\bre-?examine\b",
        ),
        ("zh", r"验证|检查|核对|反思|自我检查"),
        ("ja", r"確認|検証|見直"),
        ("ko", r"검증|확인|검토"),
        ("es", r"\b(verific|comprueb|revis)\w*"),
        ("pt", r"\b(verifiqu|verific|confir|revis)\w*"),
        ("fr", r"\b(verifi|revoi|contrôl|control)\w*"),
        ("de", r"\b(uberprufe|uberprufen|kontrollier|verifizier)\w*"),
        ("ru", r"провер\w*"),
        ("ar", r"تحقق|راجع"),
        ("fa", r"بررسی|وارسی|تایید|راستی\s*ازمایی"),
        ("hi", r"जांच|जाँच|सत्यापित|पुष्टि"),
    ),
    "F": (
        (
            "any",
            r"\bstep\s*1\s*[:.)].{0,2000}?\b(final\s+)?answer\s*[:：]|(reasoning|thoughts?|thinking|analysis)\s*[:：]"
            r".{0,2000}?\b(final\s+)?answer\s*[:：]|(步骤|第一步)\s*1?\s*[:：].{0,2000}?(最终)?答案\s*[:：]",
        ),
    ),
    "T": (
        (
            "any",
            r"<\s*/?\s*(think|thinking|thoughts?|reasoning|scratchpad|reflection|inner_monologue|monologue|cot|analysis)\s*>"
            r"|\[\s*/?\s*(think|thinking|thoughts?|reasoning|scratchpad)\s*\]",
        ),
    ),
}

#: Literals one of which every R1, R2 or T match on ASCII text contains.
_R_ASCII = (
    "reason",
    "think",
    "thought",
    "monolog",
    "scratch",
    "<",
    "[",
    "rationale",
    "deliberat",
    "chain",
    "process",
    "razon",
    "racioc",
    "pensa",
    "pense",
    "raisonn",
    "reflexi",
    "chemin",
    "gedank",
    "denk",
    "uberleg",
    "argumentation",
    "begrund",
    "losungsweg",
    "how you",
    "what you",
    "gekommen",
    "llegaste",
    "chegou",
    "arrive",
    "inner",
    "interior",
    "monologo",
    "mental",
)


#: Characters and substrings one of which every R1, R2 or T match on
#: non-ASCII text contains (besides ``_R_ASCII``, for Latin-script words):
#: CJK and Hangul by character, other scripts by stem.
_R_CHARS = frozenset("思推独考チ声사생추체독")
_R_STEMS = (
    "рассужд",
    "мысл",
    "мышл",
    "монолог",
    "пришел",
    "فک",
    "استدلال",
    "استنتاج",
    "داخلی",
    "مونولوج",
    "مونولوگ",
    "وصلت",
    "رسیدی",
    "विचार",
    "सोच",
    "तर्क",
    "एकालाप",
    "चिंतन",
)
#: Likewise for step requests (S).
_S_ASCII = ("step", "walk", "show", "paso", "passo", "etape", "pas a pas", "schritt", "zwischen")
_S_CHARS = frozenset("步歩段順逐條条")
_S_STEMS = (
    "ステップ",
    "ずつ",
    "단계",
    "차근",
    "씩",
    "шаг",
    "этап",
    "خطوه",
    "مرحله",
    "قدم",
    "گام",
    "कदम",
    "चरण",
    "एक-एक",
)


def _pattern(rx: str) -> str:
    """A pattern in normalised spelling (not lowercased: ``\\S`` must stay ``\\S``)."""
    return unicodedata.normalize("NFKC", rx).translate(_TABLE)


def _compile(entries: tuple[tuple[str, str], ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{_pattern(rx)})" for _, rx in entries), re.DOTALL)


_SCRIPT = {
    "en": "latin",
    "es": "latin",
    "pt": "latin",
    "fr": "latin",
    "de": "latin",
    "zh": "cjk",
    "ja": "cjk",
    "ko": "hangul",
    "ru": "cyrillic",
    "ar": "arabic",
    "fa": "arabic",
    "hi": "devanagari",
    "any": "any",
}
_SCRIPT_RX = (
    ("latin", re.compile(r"[a-z]")),
    ("cjk", re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")),
    ("hangul", re.compile(r"[\uac00-\ud7af]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
)
_ASCII_SCRIPTS = frozenset(("latin", "any"))


def _by_script(entries: tuple[tuple[str, str], ...]) -> dict[str, re.Pattern[str]]:
    """One compiled alternation per script: a text is searched only with the
    patterns of the scripts it contains (an alternation over every
    language costs several times more on CJK text)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for lang, rx in entries:
        groups.setdefault(_SCRIPT[lang], []).append((lang, rx))
    return {script: _compile(tuple(group)) for script, group in groups.items()}


def scripts(text: str) -> frozenset[str]:
    """The scripts of normalised ``text`` that the cue patterns are written in."""
    if text.isascii():
        return _ASCII_SCRIPTS
    return frozenset(["any", *(name for name, rx in _SCRIPT_RX if rx.search(text))])


_CLASS_RX = {cls: _by_script(entries) for cls, entries in CUES.items()}
_NAMED = {
    cls: tuple((lang, re.compile(_pattern(rx), re.DOTALL)) for lang, rx in entries) for cls, entries in CUES.items()
}
_REST = tuple((WEIGHTS[c], _CLASS_RX[c]) for c in ("X", "B", "F", "S", "V"))


def _search(by_script: dict[str, re.Pattern[str]], text: str, present: frozenset[str]) -> bool:
    return any(rx.search(text) for script, rx in by_script.items() if script in present)


def may_name_reasoning(text: str) -> bool:
    """Cheap prefilter: False when no R1, R2 or T cue can match ``text``."""
    contains = text.__contains__
    if any(map(contains, _R_ASCII)):
        return True
    if text.isascii():
        return False
    return not _R_CHARS.isdisjoint(text) or any(map(contains, _R_STEMS))


def score(text: str) -> float:
    """The cue score of normalised ``text`` (see the module docstring); 0
    when it names no reasoning as an object."""
    present = scripts(text)
    if _search(_CLASS_RX["T"], text, present):
        return STRONG_SCORE
    if _search(_CLASS_RX["R1"], text, present):
        total = WEIGHTS["R1"]
    elif _search(_CLASS_RX["R2"], text, present):
        total = WEIGHTS["R2"]
    else:
        return 0.0
    for weight, by_script in _REST:
        if _search(by_script, text, present):
            total += weight
            if total >= STRONG_SCORE:
                break
    return total


def asks_for_steps(text: str) -> bool:
    """Whether normalised ``text`` asks for steps (S), prefiltered like R."""
    contains = text.__contains__
    if not any(map(contains, _S_ASCII)) and (
        text.isascii() or (_S_CHARS.isdisjoint(text) and not any(map(contains, _S_STEMS)))
    ):
        return False
    return _search(_CLASS_RX["S"], text, scripts(text))


def classes(text: str) -> dict[str, list[str]]:
    """Which cue classes match ``normalise(text.lower())``, and in which
    languages' patterns (for evidence and tests)."""
    norm = normalise(text.lower())
    found: dict[str, list[str]] = {}
    for cls, named in _NAMED.items():
        langs = [lang for lang, rx in named if rx.search(norm)]
        if langs:
            found[cls] = langs
    return found
