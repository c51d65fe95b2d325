"""The console's words for the owner's page of clips the model rejected, where a missed fight gets its
label (merged into each language's catalogue: ``en``, ``ru``, ``kk``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

EN: Final[Mapping[str, str]] = {
    "rejected.alarm": "alarm at this venue: {kind}, {time}",
    "venue.rejected": "Rejected clips",
    "rejected.title": "Clips the model rejected",
    "rejected.explain": (
        "The server's model judged these camera clips not to be a fight, so nobody was alerted. If a clip "
        "shows a fight, say so: the next model learns from what this one missed. Every clip you open is "
        "on your access log. Look first at a clip with an alarm raised at the venue soon after."
    ),
    "rejected.none": "No clip rejected by the model is kept for this venue.",
    "rejected.scores": "camera {edge} · model {model}",
    "rejected.watch": "Watch the clip",
    "rejected.gone": "clip deleted (retention)",
    "rejected.fight": "It was a fight",
    "rejected.not_fight": "Not a fight",
    "rejected.said.real": "you said: a fight",
    "rejected.said.false_alarm": "you said: not a fight",
    "rejected.said.unsure": "you said: unsure",
    "rejected.said.none": "not reviewed",
    "rejected.saved": "Saved. Thank you: the next model learns from it.",
    "rejected.older": "Older clips",
    "col.your_word": "Your word",
}

RU: Final[Mapping[str, str]] = {
    "rejected.alarm": "тревога в заведении: {kind}, {time}",
    "venue.rejected": "Отклонённые клипы",
    "rejected.title": "Клипы, отклонённые моделью",
    "rejected.explain": (
        "Модель сервера решила, что на этих клипах камер нет драки, и никого не оповестили. Если на клипе "
        "драка, отметьте это: следующая модель учится на том, что пропустила эта. Каждый открытый вами "
        "клип записывается в журнал доступа. Сначала смотрите клипы, вскоре после которых в заведении подняли тревогу."
    ),
    "rejected.none": "Клипов, отклонённых моделью, для этого заведения не хранится.",
    "rejected.scores": "камера {edge} · модель {model}",
    "rejected.watch": "Смотреть клип",
    "rejected.gone": "клип удалён (срок хранения)",
    "rejected.fight": "Это была драка",
    "rejected.not_fight": "Не драка",
    "rejected.said.real": "вы отметили: драка",
    "rejected.said.false_alarm": "вы отметили: не драка",
    "rejected.said.unsure": "вы отметили: не уверены",
    "rejected.said.none": "не просмотрено",
    "rejected.saved": "Сохранено. Спасибо: следующая модель учится на этом.",
    "rejected.older": "Более ранние клипы",
    "col.your_word": "Ваша оценка",
}

KK: Final[Mapping[str, str]] = {
    "rejected.alarm": "мекемеде дабыл: {kind}, {time}",
    "venue.rejected": "Қабылданбаған клиптер",
    "rejected.title": "Модель қабылдамаған клиптер",
    "rejected.explain": (
        "Сервер моделі бұл камера клиптерінде төбелес жоқ деп шешті, сондықтан ешкімге хабар берілмеді. "
        "Клипте төбелес болса, белгілеңіз: келесі модель осы модель өткізіп алғаннан үйренеді. Сіз ашқан "
        "әр клип қолжетімділік журналына жазылады. Алдымен артынша мекемеде дабыл көтерілген клиптерді қараңыз."
    ),
    "rejected.none": "Бұл мекеме үшін модель қабылдамаған клип сақталмаған.",
    "rejected.scores": "камера {edge} · модель {model}",
    "rejected.watch": "Клипті көру",
    "rejected.gone": "клип жойылды (сақтау мерзімі)",
    "rejected.fight": "Бұл төбелес болды",
    "rejected.not_fight": "Төбелес емес",
    "rejected.said.real": "сіз белгіледіңіз: төбелес",
    "rejected.said.false_alarm": "сіз белгіледіңіз: төбелес емес",
    "rejected.said.unsure": "сіз белгіледіңіз: сенімді емеспін",
    "rejected.said.none": "қаралмаған",
    "rejected.saved": "Сақталды. Рақмет: келесі модель осыдан үйренеді.",
    "rejected.older": "Ертерек клиптер",
    "col.your_word": "Сіздің бағаңыз",
}
