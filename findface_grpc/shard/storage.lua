-- The Tarantool side of one shard: configuration, schema and the only stored procedures the shard server calls.
--
-- Run as `tarantool storage.lua` with FINDFACE_TT_LISTEN (host:port), FINDFACE_TT_WORK_DIR (snapshots and WAL)
-- and FINDFACE_TT_MEMTX_MB (memtx arena). The Python side (findface_grpc/shard/store.py) never touches spaces
-- directly: every read and write goes through a `shard_*` function below, so that the data layout can change
-- here without the server noticing.
--
-- Vectors are stored as Lua strings (msgpack str) of 2*dim little-endian float16 bytes: that is what binary
-- arguments become once they reach Lua in Tarantool 2.6, and it lets the packed scan join them with one
-- table.concat. float16 keeps a score within about 1e-5 of float32's, at half the memory. Shards written before
-- float16 hold 4*dim float32 bytes; the shard server tells them apart by length and rewrites them at start.

local log = require('log')

-- Every face is in this gallery; it is kept in a face's galleries whatever an update asks, so that a search of
-- "default" (the whole shard) and the galleries a face reports agree. The Python side uses the same name.
local DEFAULT_GALLERY = 'default'

local listen = os.getenv('FINDFACE_TT_LISTEN')
if listen == nil or listen == '' then
    error('FINDFACE_TT_LISTEN (host:port) is required')
end
local memtx_mb = tonumber(os.getenv('FINDFACE_TT_MEMTX_MB') or '1024')
if memtx_mb == nil or memtx_mb < 64 then
    error('FINDFACE_TT_MEMTX_MB must be a number >= 64')
end

-- No `listen` yet: clients are let in only once the procedures below exist (see the end of this file), else a
-- shard server reconnecting right after a restart would call functions that are not defined yet.
box.cfg{
    work_dir = os.getenv('FINDFACE_TT_WORK_DIR') or '.',
    memtx_memory = memtx_mb * 1024 * 1024,
    -- 'write' hands each commit to the OS before answering: acknowledged writes survive a kill -9 of this
    -- process (not a power cut, which would need 'fsync' and cost every Add a disk flush).
    wal_mode = 'write',
    -- A snapshot every hour bounds the WAL that a restart must replay; two are kept so that one can be broken.
    checkpoint_interval = 3600,
    checkpoint_count = 2,
    -- Adds of up to 10000 descriptors arrive as one request of about 20 MB; a bigger read buffer means fewer
    -- reallocations while it is read.
    readahead = 1024 * 1024,
    -- Logs go to stderr, which the launcher sends to the instance's log file.
    log_level = 5,
}

box.once('findface-shard-schema-v1', function()
    local faces = box.schema.space.create('faces', {
        format = {
            {name = 'id', type = 'unsigned'},
            {name = 'galleries', type = 'array'},
            {name = 'vector', type = 'string'},
        },
    })
    faces:create_index('primary', {type = 'tree', parts = {'id'}})
    -- Shard-wide values: the model ('model_id', 'dim') the shard holds descriptors of.
    local settings = box.schema.space.create('settings', {
        format = {{name = 'key', type = 'string'}, {name = 'value', type = 'any'}},
    })
    settings:create_index('primary', {type = 'tree', parts = {'key'}})
end)

-- Changes since a point: every write of a face stamps it with the next value of `changes`, and a delete leaves
-- {version, id} in `removed`. A shard server that restarts from a snapshot of its index taken at version V reads
-- only what changed after V (shard_changes_since, shard_removed_since) instead of every face. Entries of
-- `removed` are dropped once a snapshot covers them (shard_forget_removed).
box.once('findface-shard-schema-v2', function()
    local faces = box.space.faces
    -- if_not_exists throughout: a crash part way through re-runs this function at the next start.
    box.schema.sequence.create('changes', {min = 1, start = 1, if_not_exists = true})
    faces:format({
        {name = 'id', type = 'unsigned'},
        {name = 'galleries', type = 'array'},
        {name = 'vector', type = 'string'},
        {name = 'version', type = 'unsigned', is_nullable = true},
    })
    -- Faces written before versions existed are stamped once, here, so that every face has one.
    local stamped = 0
    box.begin()
    for _, t in faces:pairs() do
        faces:update(t[1], {{'=', 4, box.sequence.changes:next()}})
        stamped = stamped + 1
        if stamped % 10000 == 0 then
            box.commit()
            box.begin()
        end
    end
    box.commit()
    faces:create_index('by_version', {type = 'tree', unique = true, parts = {{4, 'unsigned'}}, if_not_exists = true})
    local removed = box.schema.space.create('removed', {
        format = {{name = 'version', type = 'unsigned'}, {name = 'id', type = 'unsigned'}},
        if_not_exists = true,
    })
    removed:create_index('primary', {type = 'tree', parts = {'version'}, if_not_exists = true})
end)

local faces = box.space.faces
local settings = box.space.settings
local removed = box.space.removed
local changes = box.sequence.changes

-- Galleries as a sorted list without duplicates, always holding the default gallery.
local function normalize_galleries(names)
    local seen = {[DEFAULT_GALLERY] = true}
    local out = {DEFAULT_GALLERY}
    for _, name in ipairs(names) do
        if not seen[name] then
            seen[name] = true
            table.insert(out, name)
        end
    end
    table.sort(out)
    return out
end

local function same_list(a, b)
    if #a ~= #b then
        return false
    end
    for i = 1, #a do
        if a[i] ~= b[i] then
            return false
        end
    end
    return true
end

-- Insert or replace faces, each {id, galleries, vector}, in one transaction: one WAL write for the batch, and a
-- batch is stored whole or not at all. Returns {added, replaced}.
function shard_add(batch)
    local added, replaced = 0, 0
    box.begin()
    for _, face in ipairs(batch) do
        local id, galleries, vector = face[1], face[2], face[3]
        if faces:get(id) == nil then
            added = added + 1
        else
            replaced = replaced + 1
        end
        faces:replace({id, normalize_galleries(galleries), vector, changes:next()})
    end
    box.commit()
    return {added, replaced}
end

-- Delete faces by id; returns how many existed.
function shard_remove(ids)
    local gone = {}
    box.begin()
    for _, id in ipairs(ids) do
        if faces:delete(id) ~= nil then
            table.insert(gone, id)
        end
    end
    box.commit()
    -- The tombstones go in a transaction of their own, after the deletes: they need memory, and deletes must work
    -- when the arena is full (deleting is how it gets emptied). If they cannot be written, a restart from the
    -- snapshot finds more faces than this space holds and rebuilds from the faces themselves instead.
    local stamped, err = pcall(function()
        box.begin()
        for _, id in ipairs(gone) do
            removed:insert({changes:next(), id})
        end
        box.commit()
    end)
    if not stamped then
        if box.is_in_txn() then
            box.rollback()
        end
        log.warn('deletes of %d faces done without their tombstones: %s', #gone, tostring(err))
    end
    return #gone
end

-- Faces by id, in request order, unknown ids left out: {id, galleries, vector} or {id, galleries, ''} when
-- vectors are not wanted.
function shard_get(ids, with_vectors)
    local out = {}
    for _, id in ipairs(ids) do
        local t = faces:get(id)
        if t ~= nil then
            table.insert(out, {t[1], t[2], with_vectors and t[3] or ''})
        end
    end
    return out
end

-- The vectors of faces by id, for re-scoring search candidates: {found_ids, vectors} in request order, unknown
-- ids left out.
function shard_vectors(ids)
    local found, vectors = {}, {}
    for _, id in ipairs(ids) do
        local t = faces:get(id)
        if t ~= nil then
            table.insert(found, id)
            table.insert(vectors, t[3])
        end
    end
    return {found, vectors}
end

-- Change gallery membership. With `replace` the galleries become exactly `add`; otherwise `add` is added and
-- then `remove` removed. The default gallery always stays. Returns {{id, galleries}, ...} for the faces that
-- exist and whose galleries changed, so that the caller's index can follow exactly what was stored.
function shard_update_galleries(ids, add, remove, replace)
    local dropped = {}
    if not replace then
        for _, name in ipairs(remove) do
            dropped[name] = true
        end
    end
    local changed = {}
    box.begin()
    for _, id in ipairs(ids) do
        local t = faces:get(id)
        if t ~= nil then
            local names = {}
            if not replace then
                for _, name in ipairs(t[2]) do
                    table.insert(names, name)
                end
            end
            for _, name in ipairs(add) do
                table.insert(names, name)
            end
            local kept = {}
            for _, name in ipairs(names) do
                if not dropped[name] then
                    table.insert(kept, name)
                end
            end
            local galleries = normalize_galleries(kept)
            if not same_list(galleries, t[2]) then
                faces:update(id, {{'=', 2, galleries}, {'=', 4, changes:next()}})
                table.insert(changed, {id, galleries})
            end
        end
    end
    box.commit()
    return changed
end

-- Up to `limit` ids greater than `after_id`, ascending.
function shard_list_ids(after_id, limit)
    local out = {}
    for _, t in faces.index.primary:pairs(after_id, {iterator = 'GT'}) do
        if #out >= limit then
            break
        end
        table.insert(out, t[1])
    end
    return out
end

-- Packs faces from an iterator (the `...` of an index's pairs) into one page for the shard server's index: {ids, gallery_sets, set_of_face,
-- vectors, last_key}. `vectors` is every face's vector joined into one string in the order of `ids`, so that the
-- caller decodes the page with a single np.frombuffer instead of one object per face. A page ends early where the
-- vectors' length changes (float32 faces of an older shard next to float16 ones), so that one page holds one
-- format. Galleries come as the page's distinct gallery lists plus, per face, the 0-based position of its list:
-- most faces share a few lists, and the caller then decodes each list once per page instead of once per face.
-- `last_key` is the key field (`key_field`) of the last face, where the next page starts.
local function pack_page(limit, key_field, ...)
    local ids, sets, set_of_face, vectors = {}, {}, {}, {}
    local set_at = {}
    local n = 0
    local width = nil
    local last_key = 0
    for _, t in ... do
        if n >= limit or (width ~= nil and #t[3] ~= width) then
            break
        end
        width = #t[3]
        n = n + 1
        ids[n] = t[1]
        local galleries = t[2]
        local key = #galleries == 1 and galleries[1] or table.concat(galleries, ',')
        local at = set_at[key]
        if at == nil then
            table.insert(sets, galleries)
            at = #sets - 1
            set_at[key] = at
        end
        set_of_face[n] = at
        vectors[n] = t[3]
        last_key = t[key_field]
    end
    return {ids, sets, set_of_face, table.concat(vectors), last_key}
end

-- One page of the whole shard, by id: faces with ids greater than `after_id`.
function shard_scan_packed(after_id, limit)
    return pack_page(limit, 1, faces.index.primary:pairs(after_id, {iterator = 'GT'}))
end

-- One page of the faces written (added, replaced, given other galleries) after `version`, by version.
function shard_changes_since(version, limit)
    return pack_page(limit, 4, faces.index.by_version:pairs(version, {iterator = 'GT'}))
end

-- Up to `limit` {version, id} of faces deleted after `version`, by version; {} once a snapshot has covered them.
function shard_removed_since(version, limit)
    local out = {}
    for _, t in removed.index.primary:pairs(version, {iterator = 'GT'}) do
        if #out >= limit then
            break
        end
        table.insert(out, {t[1], t[2]})
    end
    return out
end

-- The version of the latest write; a snapshot taken now reflects every change up to it.
function shard_version()
    -- current() raises until the sequence's first value has been taken.
    local ok, current = pcall(changes.current, changes)
    return ok and current or 0
end

-- Forget deletions up to `version`: a snapshot that covers them is safely on disk.
function shard_forget_removed(version)
    local versions = {}
    for _, t in removed.index.primary:pairs(version, {iterator = 'LE'}) do
        table.insert(versions, t[1])
    end
    box.begin()
    for _, key in ipairs(versions) do
        removed:delete(key)
    end
    box.commit()
    return #versions
end

-- {face count, memtx arena bytes in use, memtx arena size}.
function shard_stats()
    local slab = box.slab.info()
    return {faces:len(), slab.arena_used, slab.arena_size}
end

-- {model_id, dim}, or {'', 0} while the shard has not been given a model.
function shard_get_model()
    local model = settings:get('model_id')
    local dim = settings:get('dim')
    if model == nil or dim == nil then
        return {'', 0}
    end
    return {model[2], dim[2]}
end

-- Set the shard's model unless one is already set; returns the model that holds afterwards, so that two servers
-- racing to adopt different models both learn which one won.
function shard_set_model(model_id, dim)
    box.begin()
    if settings:get('model_id') == nil then
        settings:replace({'model_id', model_id})
        settings:replace({'dim', dim})
    end
    box.commit()
    return shard_get_model()
end

local PROCEDURES = {
    'shard_add', 'shard_remove', 'shard_get', 'shard_vectors', 'shard_update_galleries', 'shard_list_ids', 'shard_scan_packed',
    'shard_changes_since', 'shard_removed_since', 'shard_version', 'shard_forget_removed',
    'shard_stats', 'shard_get_model', 'shard_set_model',
}

-- The shard server connects as guest. Guest may only execute these functions, which run with their creator's
-- rights (setuid), so it cannot read or write spaces directly. That is safe as long as `listen` is a loopback or
-- private address, which is how the cluster runs Tarantool: only the shard server next to it should reach it.
for _, name in ipairs(PROCEDURES) do
    box.schema.func.create(name, {setuid = true, if_not_exists = true})
    box.schema.user.grant('guest', 'execute', 'function', name, {if_not_exists = true})
end

box.cfg{listen = listen}
log.info('findface shard storage ready on %s: %d faces', listen, faces:len())
