import { useState } from "preact/hooks";
import type { Chat } from "../../packages/client/src/index.ts";

interface Props {
  chats: Chat[];
  selected: string | null;
  query: string;
  onQuery(q: string): void;
  onSelect(id: string | null): void;
  onPin(id: string, order: number): void;
  onArchive(id: string, archived: boolean): void;
}

/** The chat list: a pinned section (drag to reorder), then the rest, newest first. */
export function Sidebar(props: Props) {
  const [dragging, setDragging] = useState<string | null>(null);
  const pinned = props.chats.filter((c) => c.pin_order > 0);
  const rest = props.chats.filter((c) => c.pin_order === 0);

  const item = (c: Chat) => (
    <li
      key={c.id}
      class={`chat${c.id === props.selected ? " selected" : ""}`}
      data-chat-id={c.id}
      data-testid="chat-item"
      draggable={c.pin_order > 0}
      onDragStart={() => setDragging(c.id)}
      onDragEnd={() => setDragging(null)}
      onDragOver={(e) => {
        if (dragging && c.pin_order > 0) e.preventDefault();
      }}
      onDrop={(e) => {
        e.preventDefault();
        if (dragging && dragging !== c.id && c.pin_order > 0) props.onPin(dragging, c.pin_order);
        setDragging(null);
      }}
    >
      <button type="button" class="open" onClick={() => props.onSelect(c.id)}>
        <span class={`dot${c.has_unread ? " unread" : ""}`} title={c.has_unread ? "unread" : ""} />
        <span class="title">{c.title || "New chat"}</span>
        <span class={`status ${c.status}`}>{c.status}</span>
        {c.last_turn_summary ? <span class="summary">{c.last_turn_summary}</span> : null}
      </button>
      <span class="actions">
        {c.archived ? null : (
          <button
            type="button"
            title={c.pin_order > 0 ? "Unpin" : "Pin"}
            onClick={() => props.onPin(c.id, c.pin_order > 0 ? 0 : 1)}
          >
            {c.pin_order > 0 ? "Unpin" : "Pin"}
          </button>
        )}
        <button type="button" onClick={() => props.onArchive(c.id, !c.archived)}>
          {c.archived ? "Unarchive" : "Archive"}
        </button>
      </span>
    </li>
  );

  return (
    <nav class="sidebar">
      <button type="button" class="new" onClick={() => props.onSelect(null)}>
        New chat
      </button>
      <input
        type="search"
        placeholder="Search: title:fix archived:true"
        aria-label="Search chats"
        value={props.query}
        onChange={(e) => props.onQuery((e.target as HTMLInputElement).value)}
      />
      {pinned.length > 0 ? (
        <section aria-label="Pinned">
          <h2>Pinned</h2>
          <ul data-testid="pinned">{pinned.map(item)}</ul>
        </section>
      ) : null}
      <section aria-label="Chats">
        <h2>{props.query.includes("archived:true") ? "Archived" : "Chats"}</h2>
        <ul data-testid="chats">{rest.map(item)}</ul>
      </section>
    </nav>
  );
}
