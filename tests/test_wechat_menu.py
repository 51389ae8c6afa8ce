"""`xintu wechat menu`: a TOML file, validated, diffed against WeChat's menu, applied only when different."""
import pytest

from xintu.errors import BadRequest
from xintu.wechat.menu import normalise, validate

MENU = '''
[[button]]
name = "相册"
type = "view"
url = "https://xintu.example.cn/h5/"

[[button]]
name = "更多"
[[button.sub_button]]
name = "联系我们"
type = "click"
key = "CONTACT"
[[button.sub_button]]
name = "下载客户端"
type = "view"
url = "https://xintu.example.cn/download"
'''


def test_sync_applies_and_a_second_run_changes_nothing(member_stack, tmp_path):
    stack, mp = member_stack, member_stack.sandbox.mp
    path = tmp_path / "menu.toml"
    path.write_text(MENU, encoding="utf-8")
    empty = stack.cli("wechat", "menu", "show")
    assert empty.exit_code == 0 and "no custom menu (46003)" in empty.output
    dry = stack.cli("wechat", "menu", "sync", str(path), "--dry-run")
    assert dry.exit_code == 0 and "would be replaced" in dry.output and '+      "name": "相册",' in dry.output
    assert mp.menu is None
    first = stack.cli("wechat", "menu", "sync", str(path))
    assert first.exit_code == 0 and first.output.strip().endswith("menu applied")
    assert mp.menu["button"][1]["sub_button"][0] == {"type": "click", "name": "联系我们", "key": "CONTACT"}
    second = stack.cli("wechat", "menu", "sync", str(path))
    assert second.exit_code == 0 and second.output.strip() == "menu unchanged: WeChat already has this menu"
    assert mp.menu_creates == 1
    shown = stack.cli("wechat", "menu", "show")   # the TOML it prints syncs as "unchanged"
    (tmp_path / "shown.toml").write_text(shown.output, encoding="utf-8")
    again = stack.cli("wechat", "menu", "sync", str(tmp_path / "shown.toml"))
    assert again.output.startswith("menu unchanged")
    path.write_text(MENU.replace("下载客户端", "下载"), encoding="utf-8")
    changed = stack.cli("wechat", "menu", "sync", str(path))
    assert "-" in changed.output and '"name": "下载",' in changed.output and mp.menu_creates == 2


@pytest.mark.parametrize("menu, message", [
    ('[[button]]\nname = "a"\ntype = "click"\nkey = "k"\n' * 4, "1 to 3 [[button]] tables, not 4"),
    ('[[button]]\nname = "相册相册相册"\ntype = "click"\nkey = "k"\n',
     "button 1 (相册相册相册): name is 18 bytes, WeChat allows 16"),
    ('[[button]]\nname = "m"\n' + '[[button.sub_button]]\nname = "s"\ntype = "click"\nkey = "k"\n' * 6,
     "button 1 (m): 1 to 5 sub buttons, not 6"),
    ('[[button]]\nname = "m"\n[[button.sub_button]]\nname = "' + "长" * 21
     + '"\ntype = "click"\nkey = "k"\n', "name is 63 bytes, WeChat allows 60"),
    ('[[button]]\nname = "a"\ntype = "view"\n', "button 1 (a): type view needs url"),
    ('[[button]]\nname = "a"\ntype = "view"\nurl = "javascript:alert(1)"\n',
     "url must be an http(s) address"),
    ('[[button]]\nname = "a"\ntype = "jump"\n', "type must be one of click, view"),
    ('[[button]]\nname = "a"\ntype = "click"\nkey = "k"\ncolour = "red"\n', "unknown field 'colour'"),
    ('[[button]]\nname = "a"\ntype = "click"\nkey = "k"\nurl = "https://x.cn"\n',
     "field 'url' does not belong to type click"),
    ('button = 3', "1 to 3 [[button]] tables, not 0"),
])
def test_menu_rules_give_one_clear_line(menu, message):
    import tomllib
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(tomllib.loads(menu))


def test_invalid_file_is_refused_before_any_call(member_stack, tmp_path):
    stack, mp = member_stack, member_stack.sandbox.mp
    (tmp_path / "bad.toml").write_text('[[button]]\nname = "a"\ntype = "view"\n', encoding="utf-8")
    result = stack.cli("wechat", "menu", "sync", str(tmp_path / "bad.toml"))
    assert result.exit_code == 1 and result.output.strip() == "Error: button 1 (a): type view needs url"
    broken = stack.cli("wechat", "menu", "sync", str(tmp_path / "missing.toml"))
    assert broken.exit_code == 1 and "no such file" in broken.output
    assert mp.api_calls == 0 and mp.menu is None


def test_sandbox_menu_endpoints_answer_like_wechat(member_stack):
    from xintu.wechat import official_account
    stack, mp = member_stack, member_stack.sandbox.mp
    with stack.in_app():
        client = official_account(stack.app.config)
        assert client.menu.get() is None  # 46003 "menu no exist", which wechatpy turns into None
        client.menu.create({"button": [{"type": "click", "name": "a", "key": "k"}]})
        got = client.menu.get()
        assert normalise(got) == {"button": [{"type": "click", "name": "a", "key": "k"}]}
        from wechatpy.exceptions import WeChatClientException
        with pytest.raises(WeChatClientException) as err:
            client.menu.create({"button": [{"type": "click", "name": "x" * 17, "key": "k"}]})
        assert err.value.errcode == 40018
        client.menu.delete()
        assert client.menu.get() is None and mp.menu is None
