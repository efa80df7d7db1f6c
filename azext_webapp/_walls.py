"""Real Azure's walls between this machine and a container, as facts read from Azure Resource
Manager with what the Reader role may call (every look-up here is a GET): SSH turned off for the app
and the Azure Policy that keeps it off, the SCM site's access restrictions and private endpoint, the
caller's right to publish (which the SCM site asks of a Bearer token), and the app's site containers
(sidecars). No words for the user here: ``_errors.py`` says what each fact means and what to do.
"""

import json
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from azext_webapp._arm import PERMISSIONS_API, POLICY_API, WEB_API, arm_get

SSH_FIELD = 'sites/sshenabled'          # the policy alias Microsoft.Web/sites[/slots]/sshEnabled
PUBLISH_ACTION = 'Microsoft.Web/sites/publish/Action'
SLOT_PUBLISH_ACTION = 'Microsoft.Web/sites/slots/publish/Action'
# Effects that keep a setting from being turned on (Deny) or turn it back off on every write (Modify).
BLOCKING_EFFECTS = ('deny', 'modify')
_PARAMETER = re.compile(r"\[\s*parameters\(\s*'([^']+)'\s*\)\s*\]", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# SSH turned off, and the policy that keeps it so


class SshPolicy(NamedTuple):
    """A policy assignment whose rule looks at sshEnabled, and the effect it has on this app."""
    assignment: str         # its display name (else its name)
    assignment_id: str
    scope: str              # where it is assigned: who may change it is decided there
    definition: str         # the rule's display name
    effect: str             # lower case: deny, modify, audit, disabled, ...
    enforced: bool          # enforcementMode Default (DoNotEnforce only reports)

    @property
    def blocks(self) -> bool:
        return self.enforced and self.effect in BLOCKING_EFFECTS


def ssh_policies(client: Any, site_id: str) -> List[SshPolicy]:
    """Every assignment that applies to the app (at its scope or above) whose rule, or one rule of
    whose initiative, reads sshEnabled; blocking ones first."""
    found = []
    assignments = arm_get(client, f'{site_id}/providers/Microsoft.Authorization/policyAssignments', POLICY_API,
                          query='$filter=atScope()')
    for assignment in assignments.get('value') or []:
        props = assignment.get('properties') or {}
        values = _values(props.get('parameters'))
        definition_id = props.get('policyDefinitionId') or ''
        for name, effect in _ssh_rules(client, definition_id, values):
            found.append(SshPolicy(props.get('displayName') or assignment.get('name') or '?',
                                   assignment.get('id') or '', props.get('scope') or '', name, effect,
                                   (props.get('enforcementMode') or 'Default').lower() != 'donotenforce'))
    return sorted(found, key=lambda policy: not policy.blocks)


def _ssh_rules(client: Any, definition_id: str, values: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(display name, effect) of the definition, or of each of the set's definitions, that reads
    sshEnabled; values: the parameters' values as the assignment (or the set) gives them."""
    if not definition_id:
        return []
    doc = arm_get(client, definition_id, POLICY_API)
    props = doc.get('properties') or {}
    if '/policysetdefinitions/' in definition_id.lower():
        rules = []
        defaults = _defaults(props.get('parameters'))
        for member in props.get('policyDefinitions') or []:
            given = {name: _resolve((value or {}).get('value'), values, defaults)
                     for name, value in (member.get('parameters') or {}).items()}
            rules += _ssh_rules(client, member.get('policyDefinitionId') or '', given)
        return rules
    rule = props.get('policyRule') or {}
    if SSH_FIELD not in json.dumps(rule).lower():
        return []
    effect = _resolve(((rule.get('then') or {}).get('effect')), values, _defaults(props.get('parameters')))
    return [(props.get('displayName') or doc.get('name') or definition_id, str(effect or '').lower())]


def _values(parameters: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {name: (value or {}).get('value') for name, value in (parameters or {}).items()}


def _defaults(parameters: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {name: (value or {}).get('defaultValue') for name, value in (parameters or {}).items()}


def _resolve(value: Any, values: Dict[str, Any], defaults: Dict[str, Any]) -> Any:
    """A literal, or "[parameters('name')]" from the values given, else the parameter's default."""
    match = _PARAMETER.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        return value
    name = match.group(1)
    return values[name] if values.get(name) is not None else defaults.get(name)


# ---------------------------------------------------------------------------------------------
# Who may reach the SCM site from where


class Rule(NamedTuple):
    name: str
    source: str             # an IP range, a service tag, a subnet's name, or Any
    action: str             # Allow, Deny


class Access(NamedTuple):
    """The SCM site's network walls, as ARM describes them (site and config/web)."""
    public: bool            # publicNetworkAccess not Disabled
    rules: Tuple[Rule, ...]  # the rules that govern the SCM site (the main site's when use_main)
    default_action: str     # what a request matching no rule gets: Allow or Deny
    use_main: bool          # scmIpSecurityRestrictionsUseMain: the main site's rules apply

    @property
    def restricted(self) -> bool:
        """Some addresses are refused: a Deny default, or any rule (an Allow rule ends in Deny all)."""
        return self.default_action.lower() == 'deny' or any(rule.source.lower() != 'any' for rule in self.rules)

    @property
    def allowed(self) -> Tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.action.lower() == 'allow' and rule.source.lower() != 'any')


OPEN = Access(True, (), 'Allow', False)


def access_of(site: Any, config: Any) -> Access:
    """The walls from the site (publicNetworkAccess) and its configuration (config/web)."""
    use_main = bool(getattr(config, 'scm_ip_security_restrictions_use_main', False))
    prefix = '' if use_main else 'scm_'
    raw = getattr(config, f'{prefix}ip_security_restrictions', None) or []
    rules = tuple(Rule(getattr(r, 'name', None) or '?', _source(r), getattr(r, 'action', None) or 'Allow')
                  for r in raw)
    default = getattr(config, f'{prefix}ip_security_restrictions_default_action', None)
    if not default:  # older answers: the implicit last rule says it
        default = 'Deny' if any(rule.action.lower() == 'allow' and rule.source.lower() != 'any' for rule in rules) \
            else 'Allow'
    public = (getattr(site, 'public_network_access', None) or '').lower() != 'disabled'
    return Access(public, rules, str(default), use_main)


def _source(rule: Any) -> str:
    for field in ('ip_address', 'tag', 'vnet_subnet_resource_id'):
        value = getattr(rule, field, None)
        if value and not (field == 'tag' and value == 'Default'):
            return value.rsplit('/', 1)[-1] if field == 'vnet_subnet_resource_id' else value
    return 'Any'


class PrivateEndpoint(NamedTuple):
    name: str
    addresses: Tuple[str, ...]


def private_endpoints(client: Any, site_id: str) -> List[PrivateEndpoint]:
    doc = arm_get(client, f'{site_id}/privateEndpointConnections', WEB_API)
    found = []
    for connection in doc.get('value') or []:
        props = connection.get('properties') or {}
        endpoint = ((props.get('privateEndpoint') or {}).get('id') or connection.get('name') or '?')
        found.append(PrivateEndpoint(endpoint.rsplit('/', 1)[-1], tuple(props.get('ipAddresses') or ())))
    return found


# ---------------------------------------------------------------------------------------------
# The caller's right to publish


class Rights(NamedTuple):
    publish: bool           # the caller may perform the SCM site's action
    action: str             # which action that is (sites/ or sites/slots/)
    actions: Tuple[str, ...]  # what the caller's roles allow here, for the message


def rights(client: Any, site_id: str, slot: Optional[str]) -> Rights:
    """The caller's own permissions on the app (anyone may ask for their own)."""
    doc = arm_get(client, f'{site_id}/providers/Microsoft.Authorization/permissions', PERMISSIONS_API)
    action = SLOT_PUBLISH_ACTION if slot else PUBLISH_ACTION
    allowed = False
    actions: List[str] = []
    for permission in doc.get('value') or []:
        granted = permission.get('actions') or []
        actions += granted
        if any(_matches(p, action) for p in granted) and \
                not any(_matches(p, action) for p in permission.get('notActions') or []):
            allowed = True
    return Rights(allowed, action, tuple(dict.fromkeys(actions)))


def _matches(pattern: str, action: str) -> bool:
    """An RBAC action pattern (case-insensitive; * matches anything) against an action."""
    regex = '.*'.join(re.escape(part) for part in pattern.split('*'))
    return re.fullmatch(regex, action, re.IGNORECASE) is not None


# ---------------------------------------------------------------------------------------------
# Site containers (sidecars)


class SiteContainer(NamedTuple):
    name: str
    image: str
    main: bool
    state: Optional[str] = None     # from the SCM site's /api/sitecontainers; None: not known
    message: str = ''


def site_containers(client: Any, site_id: str) -> List[SiteContainer]:
    """ARM's Microsoft.Web/sites/sitecontainers: [] for a classic (single-container) app."""
    doc = arm_get(client, f'{site_id}/sitecontainers', WEB_API)
    return [SiteContainer(item.get('name') or '?', (item.get('properties') or {}).get('image') or '?',
                          bool((item.get('properties') or {}).get('isMain')))
            for item in doc.get('value') or []]


def with_states(containers: List[SiteContainer], status: Any) -> List[SiteContainer]:
    """The ARM list with each container's state from the SCM site's answer (a list of objects with
    name and state; field names read loosely: that answer's shape is not published)."""
    states = {}
    for item in status if isinstance(status, list) else []:
        if isinstance(item, dict):
            name = item.get('name') or item.get('containerName')
            state = item.get('state') or item.get('status') or item.get('containerState')
            if name and state:
                states[str(name)] = (str(state), str(item.get('message') or item.get('statusMessage') or ''))
    return [c._replace(state=states[c.name][0], message=states[c.name][1]) if c.name in states else c
            for c in containers]
