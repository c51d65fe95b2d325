"""Why a field was refused, in the reader's language (merged into each language's catalogue).

The services and msgspec explain a refusal in English (``Invalid("unknown time zone 'X'")``,
"Expected `float`, got `str`"): the API sends that text as the problem's ``detail``. The console
shows it beside the field in the page's language: ``explain`` matches the text against ``PATTERNS``
and words it with ``problem.*`` keys (the matched values, such as a length or a role, filled in).
A text no pattern knows is shown as ``problem.other`` with the English detail beside it, so nothing
is hidden; ``tests/test_console_i18n.py`` checks every pattern has its words and that the refusals
the console's forms can meet are matched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

# (pattern over the English detail, key); a key's {placeholders} are the pattern's named groups.
PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(p), k)
    for p, k in (
        (r"^Expected `(?:float|int)`, got `\w+`", "problem.number"),
        (r"^Expected `(?:float|int)` >= (?P<n>[-0-9.e+]+)$", "problem.at_least"),
        (r"^Expected `(?:float|int)` > (?P<n>[-0-9.e+]+)$", "problem.more_than"),
        (r"^Expected `(?:float|int)` <= (?P<n>[-0-9.e+]+)$", "problem.at_most"),
        (r"^Expected `(?:float|int)` < (?P<n>[-0-9.e+]+)$", "problem.less_than"),
        (r"^Expected `bool`, got", "problem.yes_no"),
        (r"^Expected `str` of length <= (?P<n>\d+)$", "problem.too_long"),
        (r"^Expected `str` of length >= (?P<n>\d+)$", "problem.too_short"),
        (r"^Expected `str` matching regex '\^\\\+\[1-9\]", "problem.phone"),
        (r"^Expected `str` matching regex", "problem.format"),
        (r"^Expected `(?:array|object)`, got", "problem.format"),
        (r"^Invalid enum value", "problem.choice"),
        (r"^Invalid UUID", "problem.choice"),
        (r"^Object missing required field", "problem.required"),
        (r"^must not contain control characters", "problem.control"),
        (r"^must not be blank or contain control characters", "problem.blank"),
        (r"^unknown time zone", "problem.time_zone"),
        (r"^no such venue", "problem.no_venue"),
        (r"^no such (?:police )?region", "problem.no_region"),
        (r"^no such owner", "problem.no_owner"),
        (r"^a region named .* exists$", "problem.region_exists"),
        (r"^a user with this username exists$", "problem.username_taken"),
        (r"^a user with this phone exists$", "problem.phone_taken"),
        (r"^the owner must be a user with the role owner$", "problem.owner_role"),
        (r"^a user with the role (?P<role>\w+) does not belong to a venue$", "problem.role_no_venue"),
        (r"^a user with the role (?P<role>\w+) does not belong to a police region$", "problem.role_no_region"),
        (r"^a bouncer belongs to a venue$", "problem.bouncer_venue"),
        (r"^officers and dispatchers belong to a police region$", "problem.needs_region"),
        (r"^area is not a [^:]*: (?P<detail>.+)$", "problem.area"),
        (r"^not JSON$", "problem.json"),
        (r"^an administrator cannot deactivate themselves$", "problem.self_deactivate"),
        (r"^an administrator cannot change their own role$", "problem.self_role"),
        (r"^not an ISO 8601 time", "problem.time"),
        (r"^the time is outside years", "problem.time"),
        (r"^not a URL", "problem.url"),
        (r"^(?:the URL|webhook URLs) must be https", "problem.url_https"),
        (r"^the URL has no host|^the URL's host .* is not a DNS name$", "problem.url_host"),
        (r"^the URL's port .* is not in 1-65535$", "problem.url_port"),
        (r"^credentials in the URL are not allowed", "problem.url_credentials"),
        (r"not an IP address$", "problem.url_ip"),
        (
            r"is a private, loopback, link-local or reserved address$|resolves to a private or reserved",
            "problem.url_private",
        ),
        (r"^cannot resolve |resolves to no address$", "problem.url_resolve"),
    )
)


def explain(t: Callable[[str], str], message: str) -> tuple[str, str | None]:
    """``message`` in ``t``'s language, and the English detail when no pattern knows it (else None)."""
    for pattern, key in PATTERNS:
        found = pattern.search(message)
        if found:
            values = found.groupdict()
            if "role" in values:
                values["role"] = t(f"role.{values['role']}")
            return t(key).format(**values), None
    return t("problem.other"), message


EN: Final[Mapping[str, str]] = {
    "problem.url": "Not a URL.",
    "problem.url_https": "The URL must start with https:// (http:// only outside production).",
    "problem.url_host": "The URL needs a host name.",
    "problem.url_port": "The port must be between 1 and 65535.",
    "problem.url_credentials": "No user name or password in the URL: the signature authenticates.",
    "problem.url_ip": "Name the receiver by its DNS name, not an IP address.",
    "problem.url_private": "The URL leads to a private or reserved address.",
    "problem.url_resolve": "The host name does not resolve.",
    "problem.number": "Enter a number (a point or a comma before the decimals).",
    "problem.at_least": "Must be {n} or more.",
    "problem.more_than": "Must be more than {n}.",
    "problem.at_most": "Must be {n} or less.",
    "problem.less_than": "Must be less than {n}.",
    "problem.yes_no": "Choose yes or no.",
    "problem.too_long": "Too long: {n} characters at most.",
    "problem.too_short": "Too short: {n} characters at least.",
    "problem.phone": "A phone number in international form, for example +77010000000.",
    "problem.format": "Not in the expected form.",
    "problem.choice": "Choose one of the listed values.",
    "problem.required": "Required.",
    "problem.control": "Must not contain control characters.",
    "problem.blank": "Must not be blank or contain control characters.",
    "problem.time_zone": "Unknown time zone: choose one from the list (for example Asia/Almaty).",
    "problem.no_venue": "No such venue.",
    "problem.no_region": "No such police region.",
    "problem.no_owner": "No such owner.",
    "problem.region_exists": "A region with this name exists.",
    "problem.username_taken": "This username is taken.",
    "problem.phone_taken": "Another user has this phone number.",
    "problem.owner_role": "The owner must be a user with the role owner.",
    "problem.role_no_venue": "A user with the role {role} does not belong to a venue.",
    "problem.role_no_region": "A user with the role {role} does not belong to a police region.",
    "problem.bouncer_venue": "A bouncer belongs to a venue: choose one.",
    "problem.needs_region": "Officers and dispatchers belong to a police region: choose one.",
    "problem.area": "Not a boundary: a GeoJSON Polygon or MultiPolygon ({detail}).",
    "problem.json": "Not valid JSON.",
    "problem.self_deactivate": "You cannot deactivate yourself.",
    "problem.self_role": "You cannot change your own role.",
    "problem.time": "Not a valid time.",
    "problem.other": "This value is not accepted.",
}

RU: Final[Mapping[str, str]] = {
    "problem.url": "Это не URL.",
    "problem.url_https": "URL должен начинаться с https:// (http:// — только вне боевой среды).",
    "problem.url_host": "В URL нужно имя хоста.",
    "problem.url_port": "Порт должен быть от 1 до 65535.",
    "problem.url_credentials": "Без имени пользователя и пароля в URL: подлинность подтверждает подпись.",
    "problem.url_ip": "Укажите получателя по DNS-имени, а не по IP-адресу.",
    "problem.url_private": "URL ведёт на частный или зарезервированный адрес.",
    "problem.url_resolve": "Имя хоста не разрешается.",
    "problem.number": "Введите число (дробную часть — через точку или запятую).",
    "problem.at_least": "Должно быть не меньше {n}.",
    "problem.more_than": "Должно быть больше {n}.",
    "problem.at_most": "Должно быть не больше {n}.",
    "problem.less_than": "Должно быть меньше {n}.",
    "problem.yes_no": "Выберите «да» или «нет».",
    "problem.too_long": "Слишком длинно: не более {n} символов.",
    "problem.too_short": "Слишком коротко: не менее {n} символов.",
    "problem.phone": "Номер телефона в международном формате, например +77010000000.",
    "problem.format": "Неверный формат.",
    "problem.choice": "Выберите одно из значений списка.",
    "problem.required": "Обязательное поле.",
    "problem.control": "Не должно содержать управляющих символов.",
    "problem.blank": "Не может быть пустым или содержать управляющие символы.",
    "problem.time_zone": "Неизвестный часовой пояс: выберите из списка (например, Asia/Almaty).",
    "problem.no_venue": "Такого заведения нет.",
    "problem.no_region": "Такого полицейского района нет.",
    "problem.no_owner": "Такого владельца нет.",
    "problem.region_exists": "Район с таким названием уже есть.",
    "problem.username_taken": "Это имя пользователя занято.",
    "problem.phone_taken": "Этот номер телефона уже у другого пользователя.",
    "problem.owner_role": "Владельцем может быть только пользователь с ролью «владелец».",
    "problem.role_no_venue": "Пользователь с ролью «{role}» не привязывается к заведению.",
    "problem.role_no_region": "Пользователь с ролью «{role}» не привязывается к полицейскому району.",
    "problem.bouncer_venue": "Охранник привязан к заведению: выберите его.",
    "problem.needs_region": "Полицейские и диспетчеры привязаны к полицейскому району: выберите его.",
    "problem.area": "Это не граница: нужен GeoJSON Polygon или MultiPolygon ({detail}).",
    "problem.json": "Некорректный JSON.",
    "problem.self_deactivate": "Нельзя отключить самого себя.",
    "problem.self_role": "Нельзя изменить собственную роль.",
    "problem.time": "Некорректное время.",
    "problem.other": "Это значение не принимается.",
}

KK: Final[Mapping[str, str]] = {
    "problem.url": "Бұл URL емес.",
    "problem.url_https": "URL https:// деп басталуы керек (http:// тек жұмыс ортасынан тыс).",
    "problem.url_host": "URL-да хост атауы болуы керек.",
    "problem.url_port": "Порт 1 мен 65535 аралығында болуы керек.",
    "problem.url_credentials": "URL-да пайдаланушы аты мен құпиясөз болмауы керек: түпнұсқалықты қолтаңба растайды.",
    "problem.url_ip": "Алушыны IP мекенжайымен емес, DNS атауымен көрсетіңіз.",
    "problem.url_private": "URL жеке немесе резервтелген мекенжайға апарады.",
    "problem.url_resolve": "Хост атауы табылмады.",
    "problem.number": "Сан енгізіңіз (бөлшек бөлігі нүкте немесе үтір арқылы).",
    "problem.at_least": "{n} немесе одан көп болуы керек.",
    "problem.more_than": "{n} санынан көп болуы керек.",
    "problem.at_most": "{n} немесе одан аз болуы керек.",
    "problem.less_than": "{n} санынан аз болуы керек.",
    "problem.yes_no": "«Иә» немесе «жоқ» таңдаңыз.",
    "problem.too_long": "Тым ұзын: ең көбі {n} таңба.",
    "problem.too_short": "Тым қысқа: кемінде {n} таңба.",
    "problem.phone": "Халықаралық форматтағы телефон нөмірі, мысалы +77010000000.",
    "problem.format": "Пішімі дұрыс емес.",
    "problem.choice": "Тізімдегі мәндердің бірін таңдаңыз.",
    "problem.required": "Міндетті өріс.",
    "problem.control": "Басқару таңбалары болмауы керек.",
    "problem.blank": "Бос болмауы және басқару таңбаларын қамтымауы керек.",
    "problem.time_zone": "Белгісіз уақыт белдеуі: тізімнен таңдаңыз (мысалы, Asia/Almaty).",
    "problem.no_venue": "Мұндай мекеме жоқ.",
    "problem.no_region": "Мұндай полиция ауданы жоқ.",
    "problem.no_owner": "Мұндай иесі жоқ.",
    "problem.region_exists": "Бұл атаумен аудан бар.",
    "problem.username_taken": "Бұл пайдаланушы аты бос емес.",
    "problem.phone_taken": "Бұл телефон нөмірі басқа пайдаланушыда бар.",
    "problem.owner_role": "Иесі тек «иесі» рөлі бар пайдаланушы бола алады.",
    "problem.role_no_venue": "«{role}» рөлі бар пайдаланушы мекемеге тіркелмейді.",
    "problem.role_no_region": "«{role}» рөлі бар пайдаланушы полиция ауданына тіркелмейді.",
    "problem.bouncer_venue": "Күзетші мекемеге тіркеледі: оны таңдаңыз.",
    "problem.needs_region": "Полицейлер мен диспетчерлер полиция ауданына тіркеледі: оны таңдаңыз.",
    "problem.area": "Бұл шекара емес: GeoJSON Polygon немесе MultiPolygon керек ({detail}).",
    "problem.json": "JSON дұрыс емес.",
    "problem.self_deactivate": "Өзіңізді өшіре алмайсыз.",
    "problem.self_role": "Өз рөліңізді өзгерте алмайсыз.",
    "problem.time": "Уақыт дұрыс емес.",
    "problem.other": "Бұл мән қабылданбайды.",
}
